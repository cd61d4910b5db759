//! `protocols` on a plaintext entrypoint: HTTP/1.1, h2c, or both.

use super::{did_you_mean, Validator};
use crate::model::PlaintextProtocols;
use crate::tree::{Key, Node};

const PROTOCOLS_HINT: &str = "the protocols are `http/1.1` and `h2c`";

// === impl Validator ===

impl Validator {
    /// A non-empty list of `http/1.1` and `h2c`, each at most once; only without `tls`.
    pub(super) fn plaintext_protocols(
        &mut self,
        entrypoint: &str,
        key: &Key,
        node: &Node,
        tls: bool,
    ) -> Option<PlaintextProtocols> {
        let context = format!("in entrypoint `{entrypoint}`");
        if tls {
            self.report_hint(
                key.loc,
                format!(
                    "`protocols` {context} applies only to plaintext entrypoints, and this one \
                     has `tls`"
                ),
                "on a TLS entrypoint choose the protocols with `tls.alpn`, e.g. alpn: [h2] or \
                 alpn: [http/1.1]",
            );
            return None;
        }
        let what = format!("`protocols` {context}");
        let items = self.list(node, &what)?;
        if items.is_empty() {
            self.report_hint(
                node.loc,
                format!("`protocols` {context} is empty"),
                "list `http/1.1`, `h2c` or both; leave `protocols` out for both",
            );
            return None;
        }
        let (mut http11, mut h2c) = (false, false);
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, &what) else {
                ok = false;
                continue;
            };
            let seen = match text {
                "http/1.1" => &mut http11,
                "h2c" => &mut h2c,
                _ => {
                    let lower = text.to_ascii_lowercase();
                    let hint = if lower == "h2" || lower == "http/2" {
                        "a plaintext entrypoint speaks HTTP/2 as `h2c`; `h2` is HTTP/2 over TLS \
                         (`tls.alpn`)"
                            .to_owned()
                    } else {
                        match did_you_mean(&lower, PlaintextProtocols::NAMES.into_iter()) {
                            Some(suggestion) => format!("{suggestion} {PROTOCOLS_HINT}"),
                            None => PROTOCOLS_HINT.to_owned(),
                        }
                    };
                    self.report_hint(
                        item.loc,
                        format!("unknown protocol `{text}` in `protocols` {context}"),
                        hint,
                    );
                    ok = false;
                    continue;
                }
            };
            if *seen {
                self.report_hint(
                    item.loc,
                    format!("`{text}` is listed twice in `protocols` {context}"),
                    "list each protocol once",
                );
                ok = false;
                continue;
            }
            *seen = true;
        }
        if !ok {
            return None;
        }
        Some(match (http11, h2c) {
            (true, false) => PlaintextProtocols::Http11,
            (false, true) => PlaintextProtocols::H2c,
            // Both; neither cannot be, since the list is not empty and each item set one.
            _ => PlaintextProtocols::Http11AndH2c,
        })
    }
}
