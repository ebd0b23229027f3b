//! docs/openapi.json against the router's route table, so that the two
//! cannot drift, and against what the server serves at `/openapi.json`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

const DOCUMENT: &str = include_str!("../docs/openapi.json");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

/// The object a local `$ref` points at.
fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(pointer) => {
            let target = doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{pointer} resolves"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// Each path of the document with its methods, upper case.
fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn every_route_of_the_table_is_documented_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let table: BTreeMap<String, BTreeSet<String>> = blobq::http::router::routes()
        .into_iter()
        .map(|(template, allow)| {
            let methods = allow.split(", ").map(str::to_owned).collect();
            (template.to_owned(), methods)
        })
        .collect();
    let documented = documented(&doc);
    for (template, methods) in &table {
        let Some(listed) = documented.get(template) else {
            panic!("the route {template} is missing from docs/openapi.json");
        };
        assert_eq!(listed, methods, "the methods of {template}");
    }
    for template in documented.keys() {
        assert!(
            table.contains_key(template),
            "docs/openapi.json lists {template}, which the router does not serve"
        );
    }
}

#[test]
fn every_operation_names_its_parameters_and_problem_answers() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "{id} is unique");
            let parameters: Vec<&Value> = operation["parameters"]
                .as_array()
                .map(|p| p.iter().map(|p| resolve(&doc, p)).collect())
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("a name"))
                .collect();
            assert_eq!(in_path, in_template, "{what}: its path parameters");
            for parameter in &parameters {
                assert!(parameter["description"].is_string(), "{what}: {parameter}");
            }
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{what}: a success (or a redirect)"
            );
            let mut problems = 0;
            for (status, response) in responses {
                let response = resolve(&doc, response);
                assert!(response["description"].is_string(), "{what} {status}");
                if status.starts_with('4') || status.starts_with('5') {
                    if status == "503" && path == "/healthz" {
                        continue;
                    }
                    let problem = &response["content"]["application/problem+json"]["schema"];
                    assert_eq!(
                        problem["$ref"], "#/components/schemas/Problem",
                        "{what} {status}: a problem document"
                    );
                    problems += 1;
                }
            }
            assert!(problems > 0, "{what}: its problem answers");
        }
    }
    // Every reference anywhere resolves.
    fn walk(doc: &Value, value: &Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("$ref") {
                    resolve(doc, value);
                }
                map.values().for_each(|v| walk(doc, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}

/// The backticked words of `text` inside parentheses: the problem types a
/// response's description names, as in "... (`invalid-name`, `forbidden`)".
fn problem_types_named(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for group in text.split('(').skip(1) {
        let inside = group.split(')').next().unwrap_or_default();
        named.extend(inside.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    named
}

/// The problem types of the error tables of docs/API.md and docs/JOBS.md:
/// every backticked word of a table row in their `## Errors` sections.
fn documented_problem_types() -> BTreeSet<String> {
    let mut types = BTreeSet::new();
    for doc in [
        include_str!("../docs/API.md"),
        include_str!("../docs/JOBS.md"),
    ] {
        let section = doc
            .split("\n## Errors\n")
            .nth(1)
            .expect("an Errors section")
            .split("\n## ")
            .next()
            .unwrap_or_default();
        for row in section.lines().filter(|l| l.starts_with('|')) {
            types.extend(row.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    types
}

#[test]
fn every_problem_type_the_document_names_is_one_the_server_answers() {
    let doc = document();
    let documented = documented_problem_types();
    let mut named = BTreeSet::new();
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let description = response["description"].as_str().expect("a description");
        for problem in problem_types_named(description) {
            assert!(
                documented.contains(&problem),
                "the {name} response names `{problem}`, a problem type docs/API.md and docs/JOBS.md do not list"
            );
            named.insert(problem);
        }
    }
    assert!(named.contains("not-found"), "{named:?}");
}

#[tokio::test]
async fn the_server_serves_the_document_without_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_blobq"))
        .args([
            "token",
            "new",
            "--name",
            "t",
            "--namespace",
            "ns",
            "--role",
            "producer",
        ])
        .output()
        .expect("blobq token new");
    assert!(made.status.success());
    let text = String::from_utf8(made.stdout).unwrap();
    let entry = text
        .split_once("\n\n")
        .expect("the entry after the token")
        .1;
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, entry).unwrap();
    let server = common::options()
        .arg("--auth-file", tokens.display())
        .start()
        .await;
    assert_eq!(
        server.get("/qs").await.status(),
        401,
        "authentication is on"
    );
    let answer = server.get("/openapi.json").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(common::header(&answer, "content-type"), "application/json");
    let served: Value = answer.json().await.unwrap();
    assert_eq!(served, document(), "the server serves docs/openapi.json");
}
