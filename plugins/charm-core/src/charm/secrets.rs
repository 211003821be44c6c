//! Peer secrets and passwords (spec 2.3.1).
//!
//! One secret per scope: `database-peers.<app>.app` (application-owned) and
//! `database-peers.<app>.unit` (unit-owned). Each is read once per dispatch. Writes merge
//! into the local content; [`flush`] sends one `secret-add` the first time (the secret did not
//! exist) or one `secret-set` when the content differs from what was read, so no empty
//! revisions. Upstream calls `secret-add`/`secret-set` at each `set_secret`; Juju applies
//! both only at the end of the hook, so the outcome is the same with fewer calls.

use super::context::{Bag, SecretCache};
use super::{Ctx, HookError, HookResult};
use crate::bindings::charm::host::juju::{self, Kv, SecretOwner};
use crate::bindings::charm::host::random;
use crate::names::{self, SecretScope};

/// Readers treat this value as absent: upstream's `remove_secret` writes it (deleted label
/// `None`) instead of dropping the key.
const DELETED: &str = "None";

/// The passwords leader-elected creates (upstream `PASSWORD_USERS` keys), in its order.
pub const PASSWORD_KEYS: [&str; 5] = [
    "operator-password",
    "replication-password",
    "rewind-password",
    "monitoring-password",
    "patroni-password",
];

/// A new 16-character password from the host's CSPRNG.
pub fn new_password() -> String {
    names::generate_password(|buf| {
        let bytes = random::bytes(buf.len() as u32);
        buf.copy_from_slice(&bytes[..buf.len()]);
    })
}

fn cache(ctx: &mut Ctx, scope: SecretScope) -> HookResult<&mut SecretCache> {
    let loaded = match scope {
        SecretScope::App => ctx.app_secret.is_some(),
        SecretScope::Unit => ctx.unit_secret.is_some(),
    };
    if !loaded {
        let label = names::secret_label(ctx.app(), scope);
        let read = juju::secret_get(&label)?;
        let existed = read.is_some();
        let content: Bag = read
            .unwrap_or_default()
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        let c = SecretCache {
            existed,
            original: content.clone(),
            content,
        };
        match scope {
            SecretScope::App => ctx.app_secret = Some(c),
            SecretScope::Unit => ctx.unit_secret = Some(c),
        }
    }
    Ok(match scope {
        SecretScope::App => ctx.app_secret.as_mut().unwrap(),
        SecretScope::Unit => ctx.unit_secret.as_mut().unwrap(),
    })
}

/// `get_secret(scope, key)`: the secret field first (key in its secret form, `ca` →
/// `cauth`), then the legacy plain databag key (Juju 2.9 deployments). None without a peer
/// relation; `None` values count as absent.
pub fn get_secret(ctx: &mut Ctx, scope: SecretScope, key: &str) -> HookResult<Option<String>> {
    if ctx.peer_relation()?.is_none() {
        return Ok(None);
    }
    let secret_key = names::secret_key(key);
    let from_secret = cache(ctx, scope)?.content.get(&secret_key).cloned();
    let value = match from_secret {
        Some(v) => Some(v),
        None => match scope {
            SecretScope::App => ctx.app_get(key)?,
            SecretScope::Unit => ctx.unit_get(key)?,
        },
    };
    Ok(value.filter(|v| !v.is_empty() && v != DELETED))
}

/// `set_secret(scope, key, value)`: an empty value means remove (rewritten to `None`, as the
/// deleted label is configured). Any legacy plain copy of the key in the databag is dropped,
/// and so is the legacy `internal-secret` URI key. Does nothing without a peer relation.
pub fn set_secret(ctx: &mut Ctx, scope: SecretScope, key: &str, value: &str) -> HookResult<()> {
    if ctx.peer_relation()?.is_none() {
        return Ok(());
    }
    if scope == SecretScope::App && !ctx.is_leader()? {
        return Err(HookError(format!(
            "only the leader can write {key:?} to the application secret"
        )));
    }
    for legacy in [key, "internal-secret"] {
        let present = match scope {
            SecretScope::App => ctx.app_get(legacy)?.is_some(),
            SecretScope::Unit => ctx.unit_get(legacy)?.is_some(),
        };
        if present {
            match scope {
                SecretScope::App => ctx.app_set(legacy, "")?,
                SecretScope::Unit => ctx.unit_set(legacy, "")?,
            }
        }
    }
    let secret_key = names::secret_key(key);
    let c = cache(ctx, scope)?;
    if value.is_empty() {
        if c.content.contains_key(&secret_key) {
            c.content.insert(secret_key, DELETED.to_owned());
        }
    } else {
        c.content.insert(secret_key, value.to_owned());
    }
    Ok(())
}

/// Send the secret writes of this dispatch (see the module comment).
pub(crate) fn flush(ctx: &mut Ctx) -> HookResult<()> {
    for scope in [SecretScope::App, SecretScope::Unit] {
        let label = names::secret_label(ctx.app(), scope);
        let c = match scope {
            SecretScope::App => ctx.app_secret.as_mut(),
            SecretScope::Unit => ctx.unit_secret.as_mut(),
        };
        let Some(c) = c else { continue };
        if c.content == c.original || c.content.is_empty() {
            continue;
        }
        let content: Vec<Kv> = c
            .content
            .iter()
            .map(|(k, v)| Kv {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        if c.existed {
            juju::secret_set(&label, &content)?;
        } else {
            let owner = match scope {
                SecretScope::App => SecretOwner::Application,
                SecretScope::Unit => SecretOwner::Unit,
            };
            juju::secret_add(&label, owner, &content)?;
            c.existed = true;
        }
        c.original = c.content.clone();
    }
    Ok(())
}
