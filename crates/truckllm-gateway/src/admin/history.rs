//! `GET /admin/usage/history?by=provider|key|client|team|model&since=30d&step=hour|day`: the long-term
//! usage history (`storage.history`) summed per hour or day, for the dashboard and spend
//! reports. A read: any admin identity, viewers included; audited like every admin call.
//! A build without the cargo feature `postgres` answers 404.

#[cfg(feature = "postgres")]
mod history_pg;
#[cfg(feature = "postgres")]
pub use history_pg::history;

#[cfg(not(feature = "postgres"))]
/// `GET /admin/usage/history` in a build without PostgreSQL: 404, audited.
pub async fn history(
    axum::extract::State(gw): axum::extract::State<std::sync::Arc<crate::state::Gateway>>,
    axum::extract::Extension(admin): axum::extract::Extension<crate::auth::AdminCaller>,
) -> axum::response::Response {
    let call = super::Call {
        gw: &gw,
        admin: &admin,
        action: "usage.history",
        target: "usage".to_owned(),
    };
    call.refuse(crate::error::ApiError::not_found(
        "this build has no usage history (cargo feature `postgres`)",
    ))
}
