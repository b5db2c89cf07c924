use burn::tensor::Device;

use crate::ModelError;

/// Parses an explicit device name. `cpu` is burn's pure-Rust `flex` backend; `cuda:N` needs
/// the crate's `cuda` feature. The daemon never relies on `Device::default()`, which would
/// pick CUDA on a GPU-less host whenever the feature is compiled in.
pub fn select_device(name: &str) -> Result<Device, ModelError> {
    let name = name.trim();
    if name == "cpu" || name == "flex" {
        return Ok(Device::flex());
    }
    if let Some(rest) = name.strip_prefix("cuda") {
        let index: usize = match rest.strip_prefix(':') {
            None if rest.is_empty() => 0,
            Some(n) => n
                .parse()
                .map_err(|_| ModelError::Device(name.into(), "expected `cuda:N`".into()))?,
            None => return Err(ModelError::Device(name.into(), "expected `cuda:N`".into())),
        };
        return cuda_device(name, index);
    }
    Err(ModelError::Device(name.into(), "unknown device; use `cpu` or `cuda:N`".into()))
}

#[cfg(feature = "cuda")]
fn cuda_device(_name: &str, index: usize) -> Result<Device, ModelError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str, _index: usize) -> Result<Device, ModelError> {
    Err(ModelError::Device(
        name.into(),
        "this build has no CUDA support; rebuild with `--features cuda`".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_explicitly() {
        assert!(select_device("cpu").is_ok());
        let err = select_device("tpu").unwrap_err().to_string();
        assert!(err.contains("use `cpu` or `cuda:N`"), "{err}");
        assert!(select_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(select_device("cuda:0").unwrap_err().to_string().contains("--features cuda"));
    }
}
