//! `bindwave image keygen|pack|sign|inspect|add|list`.

use bindwave_proto::{TrustedKeys, Untrusted};

use super::output::{byte_bar, emit, levels_text};
use super::ImageCmd;
use crate::client::ApiClient;
use crate::images::{Inspection, SignatureCheck};
use crate::keys::{public_path, SigningKey};
use crate::table::Table;
use crate::{images, ControllerError};

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControllerError> + Send + 'static,
) -> Result<T, ControllerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ControllerError::BadRequest(e.to_string()))?
}

/// Runs an image command.
pub(super) async fn run(
    cmd: ImageCmd,
    api: &dyn Fn() -> Result<ApiClient, ControllerError>,
) -> Result<(), ControllerError> {
    match cmd {
        ImageCmd::Keygen { out } => {
            let key = SigningKey::create(&out)?;
            let public = public_path(&out);
            println!("wrote the private key {} (mode 0600) and its public key {}", out.display(), public.display());
            println!("key id {}", key.key_id());
            println!("pin it on the phones, in the agent's [trust] section:");
            println!("  keys = [\"{}\"]", key.public().to_line());
            println!("or key_files = [\"{}\"]; and in the controller's config: release_keys", public.display());
            Ok(())
        }
        ImageCmd::Pack { payload, version, hardware_levels, output, sign_key } => {
            let header = blocking(move || {
                let key = sign_key.as_deref().map(SigningKey::load).transpose()?;
                images::pack(&payload, version, hardware_levels, &output, key.as_ref())
            })
            .await?;
            let levels = header.hardware_levels.as_ref().map_or("none (decided by software level)".to_string(), |l| {
                l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            });
            let signed =
                header.signature.as_ref().map_or("unsigned".to_string(), |s| format!("signed by key {}", s.key_id));
            println!(
                "packed {} ({} payload bytes), hardware levels: {levels}, {signed}",
                header.software_version, header.payload_len
            );
            Ok(())
        }
        ImageCmd::Sign { file, key, out } => {
            let dest = out.unwrap_or_else(|| file.clone());
            let shown = dest.display().to_string();
            let header = blocking(move || images::sign(&file, &SigningKey::load(&key)?, &dest)).await?;
            let id = header.signature.as_ref().map(|s| s.key_id.to_string()).unwrap_or_default();
            println!("signed {shown} ({}) with key {id}", header.software_version);
            Ok(())
        }
        ImageCmd::Inspect { file, trust, output } => {
            let keys: Result<Vec<_>, _> = trust.iter().map(|k| images::public_key_arg(k)).collect();
            let trusted = TrustedKeys::new(keys?);
            let given = !trusted.is_empty();
            let i = blocking(move || images::inspect(&file, &trusted)).await?;
            emit(&i, output, print_inspection)?;
            match (given, i.signature, i.signed_by) {
                (false, _, _) | (true, SignatureCheck::Verified, _) => Ok(()),
                (true, SignatureCheck::Invalid, Some(id)) => {
                    Err(ControllerError::ImageUntrusted { why: Untrusted::Invalid(id) })
                }
                (true, _, Some(id)) => Err(ControllerError::ImageUntrusted { why: Untrusted::UnknownKey(id) }),
                (true, _, None) => Err(ControllerError::ImageUntrusted { why: Untrusted::Unsigned }),
            }
        }
        ImageCmd::Add { file } => {
            // Check locally first: a clear error without an upload.
            let f = file.clone();
            let i = blocking(move || images::inspect(&f, &TrustedKeys::default())).await?;
            if i.payload_len == 0 {
                return Err(ControllerError::EmptyPayload { path: file });
            }
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let bar = byte_bar(size, "upload");
            let progress = bar.clone();
            let image = api()?.add_image(&file, move |n| progress.inc(n)).await;
            bar.finish_and_clear();
            println!("{}", image?.sha256);
            Ok(())
        }
        ImageCmd::List { output } => {
            let list = api()?.images().await?;
            emit(&list, output, |list| {
                let mut t = Table::new(["SHA256", "VERSION", "HW LEVELS", "SIZE"]);
                for i in list {
                    t.row([
                        i.sha256.to_string(),
                        i.software_version.to_string(),
                        levels_text(i.hardware_levels.as_deref()),
                        i.size.to_string(),
                    ]);
                }
                print!("{t}");
            })
        }
    }
}

/// `image inspect`'s table.
fn print_inspection(i: &Inspection) {
    let mut t = Table::new(["FIELD", "VALUE"]);
    t.row(["software_version".into(), i.software_version.to_string()]);
    t.row(["hardware_levels".into(), levels_text(i.hardware_levels.as_deref())]);
    t.row(["payload_length".into(), i.payload_len.to_string()]);
    t.row(["payload_sha256".into(), i.payload_sha256.clone()]);
    t.row(["file_size".into(), i.file_size.to_string()]);
    t.row(["file_sha256".into(), i.file_sha256.clone()]);
    let signed = i.signed_by.map_or("no".to_string(), |id| format!("yes, by key {id}"));
    t.row(["signed".into(), signed]);
    t.row(["signature".into(), signature_text(i)]);
    print!("{t}");
}

/// What the signature check found, in words.
fn signature_text(i: &Inspection) -> String {
    let id = i.signed_by.map(|id| id.to_string()).unwrap_or_default();
    match i.signature {
        SignatureCheck::Unsigned => {
            "none: phones that pin release keys refuse this bind (sign it: bindwave image sign)".into()
        }
        SignatureCheck::NotChecked => format!("signed by key {id}; not checked: no key given (--trust KEY.pub)"),
        SignatureCheck::Verified => format!("verified: key {id} is one of the keys given"),
        SignatureCheck::UntrustedKey => format!("key {id} is not among the keys given"),
        SignatureCheck::Invalid => format!("INVALID: the signature by key {id} does not verify (altered or forged)"),
    }
}
