//! The API's OpenAPI description: what the handlers' `#[utoipa::path]` attributes say, and, from the access
//! table ([`crate::tokens::ROUTES`]), who may call each operation. Served at `/api/v1/openapi.json`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref};

use crate::tokens::Access;

/// The description's parts that come from no handler: what the API is, its tags, its one security scheme.
pub fn base() -> OpenApi {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Bindwave")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The Bindwave controller's HTTP API: the fleet's inventory, images, staged rollouts and their \
                     actions, the audit log. The `bindwave` CLI uses this API and its JSON output is these types. \
                     Every operation but the public ones needs a bearer token (`bindwave token create`) whose role \
                     is at least the one the operation names.",
                ))
                .license(Some(utoipa::openapi::License::new(env!("CARGO_PKG_LICENSE"))))
                .build(),
        )
        .build();
    let tags = [
        ("devices", "The phones that said hello"),
        ("images", "Binds: added, listed, and downloaded by phones"),
        ("rollouts", "Staged rollouts, their plans, actions and audit log"),
        ("tokens", "API tokens and their roles"),
        ("webhooks", "Notifications of rollout events"),
        ("operations", "Health, metrics, backups and this description"),
        ("console", "The web console's page and files"),
    ];
    doc.tags = Some(
        tags.into_iter()
            .map(|(name, about)| utoipa::openapi::tag::TagBuilder::new().name(name).description(Some(about)).build())
            .collect(),
    );
    let mut components = utoipa::openapi::Components::new();
    let bearer = Http::builder().scheme(HttpAuthScheme::Bearer).description(Some("An API token, `bw_...`")).build();
    components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));
    // The path parameters' types, which the handlers' attributes name without collecting.
    use utoipa::{PartialSchema, ToSchema};
    components.schemas.insert(crate::engine::Action::name().into(), crate::engine::Action::schema());
    components.schemas.insert(crate::model::RolloutId::name().into(), crate::model::RolloutId::schema());
    doc.components = Some(components);
    doc
}

const BEARER: &str = "bearer";

/// Adds to each operation who may call it, from [`crate::tokens::ROUTES`]: its security requirement, the role
/// in its description, and the answers to a missing or too small token. Then names the schemas of the two
/// type aliases as the API speaks of them, and returns the description's JSON.
pub fn finish(mut doc: OpenApi) -> serde_json::Value {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            let access = crate::tokens::required(method, Some(path));
            secure(op, access);
        }
    }
    // An OpenApi is plain data: it always serializes.
    let mut text = doc.to_json().unwrap_or_default();
    for (alias, name) in ALIASES {
        text = text.replace(&format!("\"#/components/schemas/{alias}\""), &format!("\"#/components/schemas/{name}\""));
    }
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(schemas) = json.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) {
        for (alias, name) in ALIASES {
            if let Some(schema) = schemas.remove(*alias) {
                schemas.insert(name.to_string(), schema);
            }
        }
        if let Some(millis) = schemas.get_mut("Millis").and_then(|m| m.as_object_mut()) {
            millis.insert("description".into(), "Milliseconds since the Unix epoch".into());
        }
    }
    json
}

/// Type aliases the derive names by what they alias ([`crate::model::Millis`], [`crate::model::Counts`]).
const ALIASES: &[(&str, &str)] = &[("u64", "Millis"), ("BTreeMap", "Counts")];

/// The operations of a path item, with their methods as HTTP writes them.
pub fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    let ops = [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
        ("HEAD", &mut item.head),
        ("OPTIONS", &mut item.options),
        ("TRACE", &mut item.trace),
    ];
    ops.into_iter().filter_map(|(m, op)| op.as_mut().map(|op| (m, op))).collect()
}

fn secure(op: &mut Operation, access: Access) {
    let Access::Needs(role) = access else {
        op.security = Some(Vec::new());
        return;
    };
    op.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(BEARER, [])]);
    let needs = format!("Needs a token with the role `{role}` or more.");
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
        _ => needs,
    });
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ApiError"))))
            .build()
    };
    op.responses.responses.entry("401".into()).or_insert_with(|| error("No token, or one that is not valid").into());
    op.responses
        .responses
        .entry("403".into())
        .or_insert_with(|| error(&format!("The token's role is below `{role}`")).into());
}

/// The description as served: its JSON, made once, and shared (not copied) by every answer.
#[derive(Clone)]
pub struct Served(axum::body::Bytes);

impl Served {
    pub fn new(doc: &serde_json::Value) -> Served {
        Served(serde_json::to_vec_pretty(doc).unwrap_or_default().into())
    }

    pub fn response(&self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0.clone()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::ROUTES;

    fn described() -> serde_json::Value {
        crate::api::description()
    }

    /// The router's routes (each made with its operation) and the access table are the same list.
    #[test]
    fn every_route_in_the_access_table_is_described_and_no_other() {
        let json = described();
        let mut described: Vec<(String, String)> = Vec::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.push((method.to_uppercase(), path.clone()));
            }
        }
        described.sort();
        let mut listed: Vec<(String, String)> = ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
        listed.sort();
        assert_eq!(described, listed);
    }

    #[test]
    fn each_operation_says_who_may_call_it_and_what_it_answers() {
        let json = described();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let access = crate::tokens::required(&method.to_uppercase(), Some(path));
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("200"), "{method} {path}: no 200");
                assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}: no summary");
                match access {
                    Access::Needs(role) => {
                        assert_eq!(op["security"], serde_json::json!([{ "bearer": [] }]), "{method} {path}");
                        let says = format!("role `{role}`");
                        assert!(op["description"].as_str().unwrap().contains(&says), "{method} {path}");
                        assert!(responses.contains_key("401") && responses.contains_key("403"), "{method} {path}");
                    }
                    Access::Public => assert_eq!(op["security"], serde_json::json!([]), "{method} {path}"),
                    Access::Unlisted => panic!("{method} {path} is described but not in the access table"),
                }
            }
        }
    }

    /// Every `$ref` names a schema the description holds.
    #[test]
    fn every_schema_referred_to_is_there() {
        let json = described();
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&json, &mut refs);
        assert!(refs.len() > 20, "{refs:?}");
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} is not among the schemas");
        }
        for name in ["RolloutStatus", "Job", "Plan", "Device", "Hello", "Reason", "RolloutSpec", "Window"] {
            assert!(schemas.contains_key(name), "{name}");
        }
        // The hand-written ones read as the strings they are.
        assert_eq!(schemas["RolloutId"]["type"], "string");
        assert_eq!(schemas["Window"]["examples"][0], "Mon-Fri 19:00-06:00");
        assert_eq!(schemas["Job"]["properties"]["id"]["$ref"], "#/components/schemas/JobId");
        // The aliases by their own names, not what they alias.
        assert_eq!(schemas["Device"]["properties"]["last_seen"]["$ref"], "#/components/schemas/Millis");
        assert!(schemas["Counts"]["propertyNames"]["enum"].as_array().unwrap().contains(&"succeeded".into()));
        assert!(!schemas.contains_key("u64") && !schemas.contains_key("BTreeMap"));
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
