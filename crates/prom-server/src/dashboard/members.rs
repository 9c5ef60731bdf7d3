//! The members page (`/app/members`): who belongs to the tenant and with which role; owners and
//! admins add people by e-mail (a new person gets an invitation link, shown once), change roles,
//! remove members (behind a confirmation page) and make new password links.
//!
//! Who may do what ([`may_manage`]): a member only looks; admins manage members and admins; only
//! an owner may make someone an owner, or change or remove an owner. The store keeps the last
//! owner (it answers `Conflict`) and writes the audit rows (`member.add`, `member.role_change`,
//! `member.remove`) with the viewer as the actor.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use prom_core::access::Role;
use prom_core::id::UserId;
use prom_core::store::{MemberRecord, StoreError};
use prom_core::user::Email;
use serde::Deserialize;

use super::page::{Chrome, Nav, PageError, render, render_status};
use super::setup::mint_password_link;
use super::viewer::{Posted, Viewer};
use crate::error::ApiError;
use crate::origin::base_url;
use crate::state::AppState;

/// How long an invitation or a new password link works.
const LINK_VALID_SECS: u64 = 7 * 86_400;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/members", get(members_page).post(add_member))
        .route("/members/{user}/role", post(change_role))
        .route("/members/{user}/remove", get(remove_page).post(remove_member))
        .route("/members/{user}/password-link", post(password_link))
}

/// Whether someone with role `viewer` may act on a member whose role is `current` (`None`: a
/// person being added), giving them `new` (`None`: removing them or resetting their password).
fn may_manage(viewer: Role, current: Option<Role>, new: Option<Role>) -> Result<(), ApiError> {
    if !viewer.includes(Role::Admin) {
        return Err(ApiError::Forbidden(format!(
            "only owners and admins manage members; you are {viewer} of this tenant: ask an owner or admin"
        )));
    }
    let touches_owner = current == Some(Role::Owner) || new == Some(Role::Owner);
    if touches_owner && viewer != Role::Owner {
        return Err(ApiError::Forbidden(
            "only an owner may make someone an owner, or change or remove an owner; ask an owner".into(),
        ));
    }
    Ok(())
}

/// The roles `viewer` may give.
fn grantable(viewer: Role) -> &'static [Role] {
    if viewer == Role::Owner { &[Role::Member, Role::Admin, Role::Owner] } else { &[Role::Member, Role::Admin] }
}

fn parse_role(raw: &str) -> Result<Role, String> {
    raw.trim().parse().map_err(|_| "choose a role: owner, admin or member".to_owned())
}

fn notice_text(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "added" => Some("The person was added. They sign in with the password they already have."),
        "role_changed" => Some("The role was changed."),
        "removed" => Some("The member was removed; their sessions in this tenant ended."),
        _ => None,
    }
}

struct RoleChoice {
    value: &'static str,
    selected: bool,
}

fn role_choices(viewer: Role, selected: Role) -> Vec<RoleChoice> {
    grantable(viewer).iter().map(|role| RoleChoice { value: role.as_str(), selected: *role == selected }).collect()
}

struct MemberRow {
    user_id: String,
    email: String,
    role: &'static str,
    added: String,
    has_password: bool,
    is_you: bool,
    /// Whether the viewer may change, remove or reset this member.
    manageable: bool,
    roles: Vec<RoleChoice>,
}

/// A link shown once, right after it was made.
struct LinkShown {
    heading: String,
    url: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    chrome: Chrome,
    members: Vec<MemberRow>,
    /// The add form's values (kept when it is shown again with an error).
    email: String,
    roles: Vec<RoleChoice>,
    notice: Option<&'static str>,
    error: Option<String>,
    link: Option<LinkShown>,
}

impl MembersPage {
    async fn build(state: &AppState, viewer: &Viewer) -> Result<Self, PageError> {
        let members = state.store.list_members(viewer.principal.tenant_id()).await?;
        let role = viewer.user().session.role;
        let me = &viewer.user().session.user_id;
        let rows = members
            .into_iter()
            .map(|m| MemberRow {
                user_id: m.user_id.to_string(),
                email: m.email.to_string(),
                role: m.role.as_str(),
                added: m.added_at.date_string(),
                has_password: m.has_password,
                is_you: m.user_id == *me,
                manageable: may_manage(role, Some(m.role), None).is_ok(),
                roles: role_choices(role, m.role),
            })
            .collect();
        Ok(Self {
            chrome: viewer.chrome(Nav::Members, "Members"),
            members: rows,
            email: String::new(),
            roles: role_choices(role, Role::Member),
            notice: None,
            error: None,
            link: None,
        })
    }

    fn with_error(mut self, error: String) -> Self {
        self.error = Some(error);
        self
    }
}

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn members_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let mut page = MembersPage::build(&state, &viewer).await?;
    page.notice = notice_text(query.notice.as_deref());
    Ok(render(&page))
}

/// The member `raw` names in the viewer's tenant (a 404 page otherwise, whatever tenant they are in).
async fn find_member(state: &AppState, viewer: &Viewer, raw: &str) -> Result<MemberRecord, PageError> {
    let gone = || PageError::NotFound("there is no such member in this tenant; they may have been removed".into());
    let user = UserId::parse(raw).ok_or_else(gone)?;
    let members = state.store.list_members(viewer.principal.tenant_id()).await?;
    members.into_iter().find(|m| m.user_id == user).ok_or_else(gone)
}

/// Makes a password link for `user` and the page that shows it (once).
async fn page_with_link(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    user: &UserId,
    heading: String,
) -> Result<Response, PageError> {
    let token = mint_password_link(state, user, LINK_VALID_SECS).await?;
    let mut page = MembersPage::build(state, viewer).await?;
    page.link = Some(LinkShown { heading, url: format!("{}/app/password?token={token}", base_url(state, headers)) });
    Ok(render(&page))
}

#[derive(Debug, Deserialize)]
struct AddForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

async fn add_member(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<AddForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.principal.require(Role::Admin)?;
    let shown = |status: StatusCode, page: MembersPage, error: String| {
        let mut page = page.with_error(error);
        page.email = form.email.trim().to_owned();
        if let Ok(role) = parse_role(&form.role) {
            page.roles = role_choices(viewer.user().session.role, role);
        }
        render_status(status, &page)
    };
    let role = match parse_role(&form.role) {
        Ok(role) => role,
        Err(error) => return Ok(shown(StatusCode::BAD_REQUEST, MembersPage::build(&state, &viewer).await?, error)),
    };
    may_manage(viewer.user().session.role, None, Some(role))?;
    let email = match Email::parse(form.email.trim()) {
        Ok(email) => email,
        Err(err) => {
            let page = MembersPage::build(&state, &viewer).await?;
            return Ok(shown(StatusCode::BAD_REQUEST, page, err.to_string()));
        }
    };
    let ctx = viewer.principal.audit_context(&viewer.meta);
    match state.store.add_member(viewer.principal.tenant_id(), &email, role, &ctx).await {
        Ok((user, true)) => {
            let heading = format!("Invitation link for {email}");
            page_with_link(&state, &viewer, &headers, &user.id, heading).await
        }
        Ok((_, false)) => Ok(Redirect::to("/app/members?notice=added").into_response()),
        Err(StoreError::Conflict(message)) => {
            Ok(shown(StatusCode::CONFLICT, MembersPage::build(&state, &viewer).await?, message))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn change_role(
    State(state): State<AppState>,
    Path(user): Path<String>,
    posted: Posted<RoleForm>,
) -> Result<Response, PageError> {
    let Posted { viewer, form } = posted;
    viewer.principal.require(Role::Admin)?;
    let member = find_member(&state, &viewer, &user).await?;
    let role = match parse_role(&form.role) {
        Ok(role) => role,
        Err(error) => {
            let page = MembersPage::build(&state, &viewer).await?.with_error(error);
            return Ok(render_status(StatusCode::BAD_REQUEST, &page));
        }
    };
    may_manage(viewer.user().session.role, Some(member.role), Some(role))?;
    let ctx = viewer.principal.audit_context(&viewer.meta);
    match state.store.set_member_role(viewer.principal.tenant_id(), &member.user_id, role, &ctx).await {
        Ok(()) => Ok(Redirect::to("/app/members?notice=role_changed").into_response()),
        Err(StoreError::Conflict(message)) => {
            let page = MembersPage::build(&state, &viewer).await?.with_error(message);
            Ok(render_status(StatusCode::CONFLICT, &page))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Template)]
#[template(path = "members_remove.html")]
struct RemovePage {
    chrome: Chrome,
    user_id: String,
    email: String,
    role: &'static str,
    is_you: bool,
    error: Option<String>,
}

impl RemovePage {
    fn of(viewer: &Viewer, member: &MemberRecord, error: Option<String>) -> Self {
        Self {
            chrome: viewer.chrome(Nav::Members, format!("Remove {}", member.email)),
            user_id: member.user_id.to_string(),
            email: member.email.to_string(),
            role: member.role.as_str(),
            is_you: member.user_id == viewer.user().session.user_id,
            error,
        }
    }
}

async fn remove_page(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, PageError> {
    viewer.principal.require(Role::Admin)?;
    let member = find_member(&state, &viewer, &user).await?;
    may_manage(viewer.user().session.role, Some(member.role), None)?;
    Ok(render(&RemovePage::of(&viewer, &member, None)))
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn remove_member(
    State(state): State<AppState>,
    Path(user): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    viewer.principal.require(Role::Admin)?;
    let member = find_member(&state, &viewer, &user).await?;
    may_manage(viewer.user().session.role, Some(member.role), None)?;
    let ctx = viewer.principal.audit_context(&viewer.meta);
    // The grants they consented to end with their membership (the store revokes them): their
    // tokens leave the verifier's cache too.
    let grants = state.store.list_grants(viewer.principal.tenant_id()).await?;
    match state.store.remove_member(viewer.principal.tenant_id(), &member.user_id, &ctx).await {
        Ok(()) => {
            for view in grants.iter().filter(|view| view.grant.user_id == member.user_id) {
                state.verifier.forget_key(&view.grant.key_id);
            }
            Ok(Redirect::to("/app/members?notice=removed").into_response())
        }
        Err(StoreError::Conflict(message)) => {
            Ok(render_status(StatusCode::CONFLICT, &RemovePage::of(&viewer, &member, Some(message))))
        }
        Err(err) => Err(err.into()),
    }
}

/// A new password link for a member who lost theirs. A password opens every tenant the person
/// belongs to, so an admin here may only reset someone who belongs to this tenant alone.
async fn password_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(user): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, PageError> {
    let viewer = posted.viewer;
    viewer.principal.require(Role::Admin)?;
    let member = find_member(&state, &viewer, &user).await?;
    may_manage(viewer.user().session.role, Some(member.role), None)?;
    let tenants = state.store.memberships(&member.user_id).await?;
    if tenants.iter().any(|m| m.tenant.id != *viewer.principal.tenant_id()) {
        return Err(ApiError::Forbidden(format!(
            "{} also belongs to other tenants, and a new password would open those too; ask the server's operator \
             to reset it",
            member.email
        ))
        .into());
    }
    let heading = format!("New password link for {}", member.email);
    page_with_link(&state, &viewer, &headers, &member.user_id, heading).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_only_look() {
        for new in [None, Some(Role::Member), Some(Role::Admin)] {
            assert!(may_manage(Role::Member, Some(Role::Member), new).is_err());
            assert!(may_manage(Role::Member, None, new).is_err());
        }
    }

    #[test]
    fn admins_manage_members_and_admins_but_not_owners() {
        for current in [None, Some(Role::Member), Some(Role::Admin)] {
            for new in [None, Some(Role::Member), Some(Role::Admin)] {
                assert!(may_manage(Role::Admin, current, new).is_ok(), "{current:?} → {new:?}");
            }
            assert!(may_manage(Role::Admin, current, Some(Role::Owner)).is_err(), "admins make no owners");
        }
        for new in [None, Some(Role::Member), Some(Role::Admin), Some(Role::Owner)] {
            assert!(may_manage(Role::Admin, Some(Role::Owner), new).is_err(), "admins leave owners alone");
        }
        assert_eq!(grantable(Role::Admin), [Role::Member, Role::Admin]);
    }

    #[test]
    fn owners_manage_everyone() {
        for current in [None, Some(Role::Member), Some(Role::Admin), Some(Role::Owner)] {
            for new in [None, Some(Role::Member), Some(Role::Admin), Some(Role::Owner)] {
                assert!(may_manage(Role::Owner, current, new).is_ok(), "{current:?} → {new:?}");
            }
        }
        assert_eq!(grantable(Role::Owner), [Role::Member, Role::Admin, Role::Owner]);
    }
}
