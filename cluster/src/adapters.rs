//! Adapter versions in the object store, one object per file under `<rid>/<version>/`.
//! Version names are content-derived ([`names::version_name`]), so an object once written is
//! never replaced by other bytes: a second worker that made the same version finds it there.
//! A version is uploaded completely before any state points at it.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{AdapterFile, AdapterPointer, Cluster, ClusterError, names};

/// The file whose bytes name a version.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Files up to this size besides the weights describe a version (config, metadata): when the
/// version is already stored, its copy is read back and kept.
const DESCRIPTION_MAX: usize = 1 << 20;

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::File { path: path.display().to_string(), source }
}

fn object_name(rid: &str, version: &str, file: &str) -> String {
    format!("{rid}/{version}/{file}")
}

impl Cluster {
    /// Uploads the version directory `dir` made at `commit` and returns its pointer.
    pub async fn put_adapter(&self, rid: &str, commit: &str, dir: &Path, published_at: u64) -> Result<AdapterPointer, ClusterError> {
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let mut listing = tokio::fs::read_dir(dir).await.map_err(file_err(dir))?;
        while let Some(entry) = listing.next_entry().await.map_err(file_err(dir))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().await.map_err(file_err(dir))?.is_file() {
                files.push((name, entry.path()));
            }
        }
        files.sort();
        let weights = dir.join(WEIGHTS_FILE);
        let weights_bytes = Bytes::from(tokio::fs::read(&weights).await.map_err(file_err(&weights))?);
        let weights_sha = names::sha256_hex(&weights_bytes);
        let version = names::version_name(commit, &weights_sha);
        let mut pointer = AdapterPointer { name: version.clone(), commit: commit.to_owned(), files: Vec::new(), published_at };
        for (name, path) in files {
            let bytes = if name == WEIGHTS_FILE { weights_bytes.clone() } else { Bytes::from(tokio::fs::read(&path).await.map_err(file_err(&path))?) };
            let object = object_name(rid, &version, &name);
            // The same version made again (a worker died between its upload and its state
            // write) has the same weights but its own description (`evolora.json` records when
            // it was made): the copy already stored stands, and the pointer names its bytes.
            if name != WEIGHTS_FILE && bytes.len() <= DESCRIPTION_MAX
                && let Some(stored) = self.adapters.get_if_present(&object).await?
            {
                pointer.files.push(AdapterFile { name, size: stored.len() as u64, sha256: names::sha256_hex(&stored) });
                continue;
            }
            let sha256 = if name == WEIGHTS_FILE { weights_sha.clone() } else { names::sha256_hex(&bytes) };
            let size = bytes.len() as u64;
            // Written once: the same version from another worker is already complete there.
            self.adapters.put_once(&object, bytes, &sha256).await?;
            pointer.files.push(AdapterFile { name, size, sha256 });
        }
        Ok(pointer)
    }

    /// Removes a version's objects (retention).
    pub async fn delete_adapter(&self, rid: &str, pointer: &AdapterPointer) -> Result<(), ClusterError> {
        for f in &pointer.files {
            self.adapters.delete(&object_name(rid, &pointer.name, &f.name)).await?;
        }
        Ok(())
    }
}

/// Makes the version `pointer` names available under `<root>/<rid>/<version>/` and returns
/// that path: downloaded into a temporary directory, every file checked against its size and
/// sha256, synced, then renamed into place. A directory already there is complete (only a
/// rename makes one), so a version is fetched once per node.
pub async fn fetch_adapter_into(cluster: &Cluster, rid: &str, pointer: &AdapterPointer, root: &Path) -> Result<PathBuf, ClusterError> {
    // Every name here came over the network and becomes a path component.
    names::check_component(rid)?;
    names::check_component(&pointer.name)?;
    for f in &pointer.files {
        names::check_component(&f.name)?;
    }
    let parent = root.join(rid);
    let dest = parent.join(&pointer.name);
    if dest.is_dir() {
        return Ok(dest);
    }
    tokio::fs::create_dir_all(&parent).await.map_err(file_err(&parent))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = parent.join(format!(".tmp-{}-{}-{nanos}", pointer.name, std::process::id()));
    let result = download(cluster, rid, pointer, &tmp).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(e);
    }
    match tokio::fs::rename(&tmp, &dest).await {
        Ok(()) => {}
        // Another request finished the same version first.
        Err(_) if dest.is_dir() => {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
        }
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            return Err(file_err(&dest)(e));
        }
    }
    if let Ok(d) = std::fs::File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(dest)
}

async fn download(cluster: &Cluster, rid: &str, pointer: &AdapterPointer, tmp: &Path) -> Result<(), ClusterError> {
    tokio::fs::create_dir_all(tmp).await.map_err(file_err(tmp))?;
    for f in &pointer.files {
        let object = object_name(rid, &pointer.name, &f.name);
        let bytes = cluster.adapters.get(&object).await?;
        let path = tmp.join(&f.name);
        // Hashing tens of MB and fsyncing are blocking work, kept off the runtime's threads.
        let (expected, size) = (f.sha256.clone(), f.size);
        let check_and_write = {
            let path = path.clone();
            move || -> Result<(), ClusterError> {
                use std::io::Write;
                if bytes.len() as u64 != size || names::sha256_hex(&bytes) != expected {
                    return Err(ClusterError::Record { what: format!("object {object}"), message: format!("{} bytes whose sha256 differs from the pointer's", bytes.len()) });
                }
                let mut file = std::fs::File::create(&path).map_err(file_err(&path))?;
                file.write_all(&bytes).map_err(file_err(&path))?;
                file.sync_all().map_err(file_err(&path))
            }
        };
        tokio::task::spawn_blocking(check_and_write).await.expect("the write task does not panic")?;
    }
    Ok(())
}
