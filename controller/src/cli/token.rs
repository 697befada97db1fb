//! `bindwave token create|list|revoke`: the operators' API tokens, through the API (admin role).

use super::output::emit;
use super::TokenCmd;
use crate::api::TokenRequest;
use crate::client::ApiClient;
use crate::table::Table;
use crate::ControllerError;

pub(super) async fn run(cmd: TokenCmd, api: ApiClient) -> Result<(), ControllerError> {
    match cmd {
        TokenCmd::Create { name, role, output } => {
            let made = api.create_token(&TokenRequest { name, role }).await?;
            emit(&made, output, |t| {
                println!("{}", t.token);
                eprintln!(
                    "token {:?} ({}): shown this once, the controller keeps only its hash; give it with --token, \
                     BINDWAVE_TOKEN or --token-file",
                    t.info.name, t.info.role
                );
            })
        }
        TokenCmd::List { output } => {
            let list = api.tokens().await?;
            emit(&list, output, |list| {
                let mut t = Table::new(["NAME", "ROLE", "CREATED (UTC)"]);
                for i in list {
                    t.row([i.name.clone(), i.role.to_string(), super::rollout::time(i.created_at)]);
                }
                print!("{t}");
            })
        }
        TokenCmd::Revoke { name } => {
            let info = api.revoke_token(&name).await?;
            println!("revoked {} ({})", info.name, info.role);
            Ok(())
        }
    }
}
