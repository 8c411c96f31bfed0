//! Sticky sessions from the worker's side (spec §7): reading the instance a request's
//! `AWSELB` cookie names, and the `Set-Cookie` lines its answer carries.

/// The instance a request's genuine `AWSELB` cookie names (spec §7.4, §7.9: with the
/// application policy, only while the application's own cookie is still sent).
pub(super) fn sticky_target(
    head: &[u8],
    policy: &crate::http::sticky::Policy,
    key: &crate::http::sticky::Key,
) -> Option<(String, u16)> {
    use crate::http::sticky::{cookie_value, Policy};
    let mut headers = [httparse::EMPTY_HEADER; crate::http::request::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let cookies: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .map(|h| h.value)
        .collect();
    if let Policy::Application { cookie } = policy {
        cookie_value(&cookies, cookie)?;
    }
    key.verify(cookie_value(&cookies, "AWSELB")?)
}

/// The `Set-Cookie` lines a response gets for stickiness (spec §7.4–7.10), if any.
pub(super) fn sticky_cookies(
    state: &super::conn::StickyState,
    response_head: &[u8],
    topo: &crate::config::Topology,
    instance: usize,
    backend: usize,
    key: &crate::http::sticky::Key,
) -> Option<String> {
    use crate::http::sticky::{application_cookies, duration_cookies, Policy};
    let id = &topo.instances.get(instance)?.id;
    let port = topo.backends.get(backend)?.addr.port();
    match &state.policy {
        Policy::Duration { period } => state
            .set_cookie
            .then(|| duration_cookies(&key.token(id, port), *period)),
        Policy::Application { cookie } => {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            resp.parse(response_head).ok()?;
            let set_cookies: Vec<&[u8]> = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
                .map(|h| h.value)
                .collect();
            application_cookies(&set_cookies, cookie, &key.token(id, port))
        }
    }
}
