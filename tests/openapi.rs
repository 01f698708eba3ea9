//! `api/openapi.json` must be exactly what the code generates: regenerate it with
//! `cargo run -- openapi > api/openapi.json` after changing a route or a type.

#[test]
fn checked_in_spec_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/openapi.json");
    let file = std::fs::read_to_string(&path).expect("api/openapi.json is missing");
    let code = shoal::api::openapi_json();
    assert!(
        file.trim_end() == code.trim_end(),
        "api/openapi.json is stale: run `cargo run -- openapi > api/openapi.json`"
    );
    let spec: serde_json::Value = serde_json::from_str(&code).unwrap();
    for route in [
        "/collections/{name}/points/query",
        "/collections/{name}/points/scroll",
        "/healthz",
    ] {
        assert!(
            spec["paths"].get(route).is_some(),
            "{route} missing from the spec"
        );
    }
}
