//! Audit events: what changed, who did it, from where. Written in the same transaction as the
//! change they record; never carry key material (keys appear by id, label and display form only).

use std::fmt;

use serde::Serialize;

use crate::id::{KeyId, TenantId, UserId};
use crate::time::Timestamp;
use crate::user::Email;

/// The actions the audit log records. The strings are a public contract (filters, exports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    ApiKeyCreate,
    ApiKeyRevoke,
    ApiKeyDelete,
    ApiKeyRotate,
    ApiKeyUse,
    UserLogin,
    UserLoginFailed,
    UserLogout,
    MemberAdd,
    /// A member's role in a tenant changed.
    MemberRoleChange,
    /// A member left a tenant (their sessions there end with it).
    MemberRemove,
    /// A user set their password with a password link (in the log of each of their tenants).
    UserPasswordSet,
    ServiceCreate,
    ServiceUpdate,
    ServiceDelete,
    /// A service's prices changed (in the log of every tenant with an allowance for it).
    ServicePriceChange,
    AllowanceApprove,
    /// A person consented to an OAuth client: a grant was made (with its spend cap and expiry).
    OAuthConsent,
    /// Tokens were issued for a grant (a code exchanged, or a refresh).
    OAuthTokenIssue,
    /// A used refresh token or authorization code was presented again: the grant was revoked.
    OAuthReuseDetected,
    /// A grant was revoked (on the dashboard, or by its client at `/oauth/revoke`).
    OAuthRevoke,
}

impl AuditAction {
    pub const ALL: [AuditAction; 21] = [
        Self::ApiKeyCreate,
        Self::ApiKeyRevoke,
        Self::ApiKeyDelete,
        Self::ApiKeyRotate,
        Self::ApiKeyUse,
        Self::UserLogin,
        Self::UserLoginFailed,
        Self::UserLogout,
        Self::MemberAdd,
        Self::MemberRoleChange,
        Self::MemberRemove,
        Self::UserPasswordSet,
        Self::ServiceCreate,
        Self::ServiceUpdate,
        Self::ServiceDelete,
        Self::ServicePriceChange,
        Self::AllowanceApprove,
        Self::OAuthConsent,
        Self::OAuthTokenIssue,
        Self::OAuthReuseDetected,
        Self::OAuthRevoke,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKeyCreate => "api_key.create",
            Self::ApiKeyRevoke => "api_key.revoke",
            Self::ApiKeyDelete => "api_key.delete",
            Self::ApiKeyRotate => "api_key.rotate",
            Self::ApiKeyUse => "api_key.use",
            Self::UserLogin => "user.login",
            Self::UserLoginFailed => "user.login_failed",
            Self::UserLogout => "user.logout",
            Self::MemberAdd => "member.add",
            Self::MemberRoleChange => "member.role_change",
            Self::MemberRemove => "member.remove",
            Self::UserPasswordSet => "user.password_set",
            Self::ServiceCreate => "service.create",
            Self::ServiceUpdate => "service.update",
            Self::ServicePriceChange => "service.price_change",
            Self::ServiceDelete => "service.delete",
            Self::AllowanceApprove => "allowance.approve",
            Self::OAuthConsent => "oauth.consent",
            Self::OAuthTokenIssue => "oauth.token_issue",
            Self::OAuthReuseDetected => "oauth.reuse_detected",
            Self::OAuthRevoke => "oauth.revoke",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == raw)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    User {
        id: UserId,
        email: Email,
    },
    ApiKey {
        id: KeyId,
        display: String,
    },
    /// The command line on the server's machine (`prom admin …`).
    Admin,
    /// The publisher of a service, as the tenants using it see it (not who in that tenant acted).
    Publisher {
        tenant: crate::id::TenantId,
    },
    /// Someone not yet identified (a failed sign-in).
    Anonymous {
        claimed: Option<String>,
    },
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::ApiKey { .. } => "api_key",
            Self::Admin => "admin_cli",
            Self::Publisher { .. } => "publisher",
            Self::Anonymous { .. } => "anonymous",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Self::User { id, .. } => Some(id.as_str()),
            Self::ApiKey { id, .. } => Some(id.as_str()),
            Self::Publisher { tenant } => Some(tenant.as_str()),
            Self::Admin | Self::Anonymous { .. } => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Self::User { email, .. } => Some(email.as_str()),
            Self::ApiKey { display, .. } => Some(display),
            Self::Admin | Self::Publisher { .. } => None,
            Self::Anonymous { claimed } => claimed.as_deref(),
        }
    }
}

/// Where a request came from, and who made it: everything an audited change needs besides itself.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub actor: Actor,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl AuditContext {
    pub fn admin_cli() -> Self {
        Self { actor: Actor::Admin, ip: None, user_agent: None }
    }
}

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl AuditTarget {
    pub fn api_key(id: &KeyId, label: &str) -> Self {
        Self { kind: "api_key".into(), id: id.to_string(), label: Some(label.to_owned()) }
    }

    pub fn service(slug: &str, name: &str) -> Self {
        Self { kind: "service".into(), id: slug.to_owned(), label: Some(name.to_owned()) }
    }

    pub fn grant(id: &crate::id::GrantId, client_name: &str) -> Self {
        Self { kind: "oauth_grant".into(), id: id.to_string(), label: Some(client_name.to_owned()) }
    }

    pub fn user(id: &UserId, email: &Email) -> Self {
        Self { kind: "user".into(), id: id.to_string(), label: Some(email.to_string()) }
    }
}

/// An event about to be written.
#[derive(Clone, Debug)]
pub struct NewAuditEvent {
    pub at: Timestamp,
    pub tenant_id: Option<TenantId>,
    pub action: AuditAction,
    pub context: AuditContext,
    pub target: Option<AuditTarget>,
    pub details: serde_json::Value,
}

/// How the actor of a stored event is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActorView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: Timestamp,
    pub tenant_id: Option<TenantId>,
    pub action: String,
    pub actor: ActorView,
    pub target: Option<AuditTarget>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

/// Most events one listing returns.
pub const MAX_AUDIT_PAGE: u32 = 500;

/// Which events to list: newest first (by `at`, then by id), after the event `before` in that
/// order (for paging: the id of the last event of the previous page), at most `limit`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<AuditAction>,
    /// Events about this key.
    pub key_id: Option<KeyId>,
    /// Events whose actor's id or name (a user's e-mail address, a key's display form) is exactly
    /// this.
    pub actor: Option<String>,
    /// Events at or after this instant.
    pub from: Option<Timestamp>,
    /// Events before this instant.
    pub to: Option<Timestamp>,
    pub before: Option<i64>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_own_name_and_parses_back() {
        let mut names: Vec<&str> = AuditAction::ALL.iter().map(|action| action.as_str()).collect();
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AuditAction::ALL.len(), "two actions share a name");
        assert_eq!(AuditAction::parse("member.role_change"), Some(AuditAction::MemberRoleChange));
        assert_eq!(AuditAction::parse("member.remove"), Some(AuditAction::MemberRemove));
        assert_eq!(AuditAction::parse("user.password_set"), Some(AuditAction::UserPasswordSet));
        assert_eq!(AuditAction::parse("member"), None);
    }
}
