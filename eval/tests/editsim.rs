//! Edit similarity is Python's `difflib.SequenceMatcher(None, a, b).ratio()`, autojunk
//! heuristic included: pairs computed by Python (tests/reference/make_editsim_fixture.py).

use evolora_eval::metrics::edit_similarity;
use serde_json::Value;

#[test]
fn edit_similarity_equals_difflibs_ratio() {
    let fixture = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/editsim.json")).unwrap();
    let pairs: Vec<Value> = serde_json::from_str(&fixture).unwrap();
    assert!(pairs.len() > 100);
    for pair in &pairs {
        let (a, b) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
        let expected = pair["ratio"].as_f64().unwrap();
        let got = edit_similarity(a, b);
        assert!((got - expected).abs() <= 1e-12, "ratio({a:?}, {b:?}) = {got}, difflib says {expected}");
    }
}
