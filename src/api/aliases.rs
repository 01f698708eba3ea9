//! Collection aliases in Qdrant's shapes: `POST /collections/aliases` (a batch of
//! `create_alias` / `delete_alias` / `rename_alias` actions, applied all or nothing through the
//! metadata Raft group, so swapping an alias from an old collection to its re-indexed
//! successor is one step every node sees at once), `GET /aliases` and
//! `GET /collections/{name}/aliases`. Resolving an alias is not done here: the router and the
//! collection handlers resolve every name through the cluster state.

use super::error::ApiError;
use super::types::MetaQuery;
use super::{AppState, JsonBody, ok};
use crate::cluster::AliasAction;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"collection_name", "alias_name"}` of `create_alias`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlias {
    /// The collection the alias names (it must exist).
    pub collection_name: String,
    /// The alias (not the name of a collection); an existing alias is moved.
    pub alias_name: String,
}

/// `{"alias_name"}` of `delete_alias`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAlias {
    /// The alias (it must exist).
    pub alias_name: String,
}

/// `{"old_alias_name", "new_alias_name"}` of `rename_alias`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameAlias {
    /// The alias now (it must exist).
    pub old_alias_name: String,
    /// Its new name.
    pub new_alias_name: String,
}

/// One action, as Qdrant tags it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AliasOperation {
    /// Create (or move) an alias.
    CreateAlias(CreateAlias),
    /// Delete an alias.
    DeleteAlias(DeleteAlias),
    /// Rename an alias.
    RenameAlias(RenameAlias),
}

/// `POST /collections/aliases`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeAliases {
    /// Applied in order, all or none.
    pub actions: Vec<AliasOperation>,
}

/// One alias and the collection it names.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AliasDescription {
    /// The alias.
    pub alias_name: String,
    /// The collection.
    pub collection_name: String,
}

/// `{"aliases": [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AliasesList {
    /// In alias order.
    pub aliases: Vec<AliasDescription>,
}

impl From<AliasOperation> for AliasAction {
    fn from(op: AliasOperation) -> Self {
        match op {
            AliasOperation::CreateAlias(c) => AliasAction::Create {
                collection: c.collection_name,
                alias: c.alias_name,
            },
            AliasOperation::DeleteAlias(d) => AliasAction::Delete {
                alias: d.alias_name,
            },
            AliasOperation::RenameAlias(r) => AliasAction::Rename {
                old: r.old_alias_name,
                new: r.new_alias_name,
            },
        }
    }
}

fn list(pairs: Vec<(String, String)>) -> Response {
    ok(AliasesList {
        aliases: pairs
            .into_iter()
            .map(|(alias_name, collection_name)| AliasDescription {
                alias_name,
                collection_name,
            })
            .collect(),
    })
}

/// Create, delete and rename aliases, all or none: a missing collection or alias is a 404, an
/// alias named like a collection a 409, and then nothing changes.
#[utoipa::path(post, path = "/collections/aliases", tag = "aliases", request_body = ChangeAliases,
    params(MetaQuery),
    responses((status = 200, body = bool), (status = 400), (status = 404), (status = 409), (status = 503), (status = 415, description = "a body without Content-Type: application/json")))]
pub async fn update_aliases(
    State(st): State<AppState>,
    Query(q): Query<MetaQuery>,
    JsonBody(req): JsonBody<ChangeAliases>,
) -> Result<Response, ApiError> {
    let actions = req.actions.into_iter().map(AliasAction::from).collect();
    let cluster = st.cluster.clone();
    let change = async move { cluster.update_aliases(actions).await };
    super::handlers::within(q.timeout, "update_collection_aliases", change).await?;
    Ok(ok(true))
}

/// Every alias.
#[utoipa::path(get, path = "/aliases", tag = "aliases", responses((status = 200, body = AliasesList)))]
pub async fn list_aliases(State(st): State<AppState>) -> Response {
    list(st.cluster.state().aliases_of(None))
}

/// The aliases of one collection (404 if it does not exist).
#[utoipa::path(get, path = "/collections/{name}/aliases", tag = "aliases",
    params(("name" = String, Path)), responses((status = 200, body = AliasesList), (status = 404)))]
pub async fn collection_aliases(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let state = st.cluster.state();
    if !state.collections.contains_key(&name) {
        return Err(ApiError::CollectionNotFound(name));
    }
    Ok(list(state.aliases_of(Some(&name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdrant_bodies_parse_into_actions() {
        let body = serde_json::json!({"actions": [
            {"delete_alias": {"alias_name": "live"}},
            {"create_alias": {"collection_name": "v2", "alias_name": "live"}},
            {"rename_alias": {"old_alias_name": "a", "new_alias_name": "b"}},
        ]});
        let req: ChangeAliases = serde_json::from_value(body).unwrap();
        let actions: Vec<AliasAction> = req.actions.into_iter().map(Into::into).collect();
        assert_eq!(
            actions,
            vec![
                AliasAction::Delete {
                    alias: "live".into()
                },
                AliasAction::Create {
                    collection: "v2".into(),
                    alias: "live".into()
                },
                AliasAction::Rename {
                    old: "a".into(),
                    new: "b".into()
                },
            ]
        );
        let bad = serde_json::json!({"actions": [{"create_alias": {"alias_name": "x"}}]});
        assert!(serde_json::from_value::<ChangeAliases>(bad).is_err());
    }
}
