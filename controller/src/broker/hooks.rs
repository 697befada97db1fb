//! The embedded broker's gate: rmqtt hook handlers that let in only authenticated clients ([`super::auth`])
//! and keep every device in its lane ([`super::acl`]).
//!
//! rmqtt asks these hooks at CONNECT (`client_authenticate`), at each PUBLISH (`message_publish_check_acl`)
//! and at each SUBSCRIBE (`client_subscribe_check_acl`). The controller logs in as a superuser, whom rmqtt
//! never asks about topics. A refused publish is dropped (MQTT 3.1.1 has no negative PUBACK, so the client
//! sees an ordinary ack) without dropping the connection; a refused subscription gets the failure return
//! code. Each refusal is counted in `bindwave_refused_total{what}` and logged once per client and kind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prometheus::IntCounterVec;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, PublishAclResult, SubscribeAclResult};

use super::acl::{allowed_publish, allowed_subscribe, Identity};
use super::auth::{Authentication, Login, LoginRefused};
use crate::engine::Refused;

/// Clients whose refusals were logged, at most; past it the set starts over (and logs again).
const LOGGED_CLIENTS: usize = 10_000;

/// Registers the gate on `scx`'s hooks and starts it.
pub(super) async fn install(scx: &ServerContext, authentication: Authentication, refused: Option<IntCounterVec>) {
    let gate = Arc::new(Gate { authentication, refused, logged: Mutex::new(HashSet::new()) });
    let register = scx.extends.hook_mgr().register();
    for typ in [Type::ClientAuthenticate, Type::MessagePublishCheckAcl, Type::ClientSubscribeCheckAcl] {
        register.add(typ, Box::new(GateHandler(gate.clone()))).await;
    }
    register.start().await;
}

struct Gate {
    authentication: Authentication,
    refused: Option<IntCounterVec>,
    /// `(client id, what)` already logged.
    logged: Mutex<HashSet<(String, Refused)>>,
}

struct GateHandler(Arc<Gate>);

#[async_trait]
impl Handler for GateHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let gate = &self.0;
        match param {
            Parameter::ClientAuthenticate(info) => (false, Some(HookResult::AuthResult(gate.authenticate(info)))),
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let topic: &str = &publish.topic;
                if session_identity(session).is_some_and(|id| allowed_publish(&id, topic)) {
                    return (true, acc);
                }
                gate.refuse(Refused::MqttPublishDenied, session.id.client_id.as_ref(), || {
                    format!("publish to {topic:?} is outside its lane; dropped")
                });
                let result = PublishAclResult::rejected(false, Some("outside this client's topics".into()));
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let filter: &str = &subscribe.topic_filter;
                if session_identity(session).is_some_and(|id| allowed_subscribe(&id, filter)) {
                    let granted = SubscribeAclResult::new_success(subscribe.opts.qos(), None);
                    return (true, Some(HookResult::SubscribeAclResult(granted)));
                }
                gate.refuse(Refused::MqttSubscribeDenied, session.id.client_id.as_ref(), || {
                    format!("subscription to {filter:?} is outside its lane; refused")
                });
                let refused = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(refused)))
            }
            _ => (true, acc),
        }
    }
}

/// The identity a logged-in session has: its username, which [`Gate::authenticate`] checked (and which is the
/// certificate's CN on a listener that requires client certificates).
fn session_identity(session: &Session) -> Option<Identity> {
    session.id.username.as_deref().and_then(Identity::parse)
}

impl Gate {
    fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let login = Login {
            client_id: info.client_id(),
            username: info.username().map(|u| &**u),
            password: info.password().map(|p| &p[..]),
            cert_cn: info.cert().and_then(|c| c.common_name.as_deref()),
        };
        match self.authentication.login(login) {
            Ok(identity) => AuthResult::Allow(identity == Identity::Controller, None),
            Err(why) => {
                let result = match why {
                    LoginRefused::BadPassword(_) | LoginRefused::UnknownIdentity(_) => {
                        AuthResult::BadUsernameOrPassword
                    }
                    _ => AuthResult::NotAuthorized,
                };
                let remote = info.id().remote_addr.map_or_else(|| "-".to_string(), |a| a.to_string());
                self.refuse(Refused::MqttAuth, info.client_id(), || format!("connection from {remote} refused: {why}"));
                result
            }
        }
    }

    /// Counts a refusal, and logs it the first time this client gets this kind.
    fn refuse(&self, what: Refused, client_id: &str, message: impl FnOnce() -> String) {
        if let Some(refused) = &self.refused {
            refused.with_label_values(&[what.as_str()]).inc();
        }
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if logged.len() >= LOGGED_CLIENTS {
                logged.clear();
            }
            logged.insert((client_id.to_string(), what))
        };
        if first {
            tracing::warn!(client_id, what = what.as_str(), "MQTT {}", message());
        }
    }
}
