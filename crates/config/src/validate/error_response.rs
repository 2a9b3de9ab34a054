//! Checks of `errorResponses` (top level and per route): statuses the gateway can
//! generate, a content type that is a header value, a body template that parses.

use crate::model::ErrorResponse;

use super::Issues;

pub(super) fn check(list: &[ErrorResponse], at: &str, issues: &mut Issues) {
    for (i, e) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        for (j, s) in e.statuses.iter().enumerate() {
            if !(400..=599).contains(s) {
                issues.add(
                    format!("{at}.statuses[{j}]"),
                    format!("{s} is not an error status (400-599)"),
                );
            }
        }
        if e.content_type.is_empty() || !e.content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            issues.add(
                format!("{at}.contentType"),
                format!("{:?} is not a valid content type", e.content_type),
            );
        }
        if let Err(m) = e.template() {
            issues.add(format!("{at}.body"), m);
        }
    }
}
