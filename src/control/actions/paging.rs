//! DescribeLoadBalancers paging (spec §19.1): `PageSize` 1–400 (default 400), `Marker`
//! from a previous answer's `NextMarker`.
//!
//! Load balancers are listed by name, and a marker names the last one a page held, so
//! the next page starts after that name even if it was deleted in between. A marker is
//! `clb1` and the name in hex: opaque to callers as ELB's are, and anything clb did not
//! write is refused with `ValidationError` rather than answered with a full list.

use super::*;

pub const MAX_PAGE_SIZE: u32 = 400;
const MARKER_PREFIX: &str = "clb1";

/// One page of `lbs` (sorted by name here) and the marker of the next, if any remain.
pub(super) fn page<'a>(
    mut lbs: Vec<&'a LbState>,
    params: &Params,
) -> Result<(Vec<&'a LbState>, Option<String>), ApiError> {
    let size = match params.u32("PageSize")? {
        None => MAX_PAGE_SIZE,
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
        Some(n) => {
            let bound = if n < 1 {
                "greater than or equal to 1"
            } else {
                "less than or equal to 400"
            };
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at 'pageSize' failed to satisfy constraint: Member must have value {bound}"
            )));
        }
    };
    lbs.sort_by(|a, b| a.name.cmp(&b.name));
    lbs.dedup_by(|a, b| a.name == b.name);
    if let Some(marker) = params.get("Marker") {
        let after = name_of(marker).ok_or_else(|| {
            ApiError::validation(format!(
                "Invalid Marker '{}': give the NextMarker of a previous answer",
                marker.escape_debug()
            ))
        })?;
        lbs.retain(|lb| lb.name > after);
    }
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if lbs.len() <= size {
        return Ok((lbs, None));
    }
    lbs.truncate(size);
    let next = lbs.last().map(|lb| marker_of(&lb.name));
    Ok((lbs, next))
}

pub(crate) fn marker_of(name: &str) -> String {
    let mut marker = String::from(MARKER_PREFIX);
    for b in name.bytes() {
        marker.push_str(&format!("{b:02x}"));
    }
    marker
}

/// The load balancer name a marker clb wrote holds; `None` for anything else.
pub(crate) fn name_of(marker: &str) -> Option<String> {
    let hex = marker.strip_prefix(MARKER_PREFIX)?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    String::from_utf8(bytes)
        .ok()
        .filter(|name| crate::config::valid_load_balancer_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_refuse_what_clb_did_not_write() {
        for name in ["a", "Web-1", &"z".repeat(32)] {
            assert_eq!(name_of(&marker_of(name)).as_deref(), Some(name));
        }
        for bad in [
            "",
            "web",
            "clb1",
            "clb1zz",
            "clb1616",
            "clb12d",
            "clb1c3a9",
            "CLB1616263",
        ] {
            assert_eq!(name_of(bad), None, "{bad}");
        }
    }
}
