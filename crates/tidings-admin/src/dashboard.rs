//! The dashboard served at `GET /`: one server-rendered HTML page with a little vanilla
//! JavaScript that polls the JSON API (sending the bearer token kept in the browser's
//! session storage, when the server wants one).

/// The page.
pub(crate) const PAGE: &str = include_str!("dashboard.html");
