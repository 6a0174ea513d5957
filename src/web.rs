//! The browser client in `web/`, embedded in the binary so the server runs from anywhere.

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const ASSETS: &[(&str, Asset)] = &[
    (
        "/index.html",
        Asset {
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("../web/index.html"),
        },
    ),
    (
        "/player.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("../web/player.js"),
        },
    ),
];

/// The asset for a request path (`/` is `index.html`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn serves_index_at_root() {
        let index = super::asset("/").unwrap();
        assert!(index.content_type.starts_with("text/html"));
        assert!(std::str::from_utf8(index.body)
            .unwrap()
            .contains("player.js"));
        assert!(super::asset("/nope").is_none());
        assert!(super::asset("/../Cargo.toml").is_none());
    }
}
