//! The browser client in `web/`, embedded in the binary so the server runs from anywhere.
//!
//! Every file in `web/` is served by name (flat; `/` is `index.html`). The pages are served
//! cross-origin isolated (see [`ISOLATION_HEADERS`]) so the player can share its audio ring with
//! the AudioWorklet through a `SharedArrayBuffer`.

use include_dir::{include_dir, Dir};

static WEB: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// Headers that make the page cross-origin isolated (`SharedArrayBuffer` needs it) and keep the
/// client's files from being embedded by other origins.
pub const ISOLATION_HEADERS: [(&str, &str); 3] = [
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The asset for a request path (`/` is `index.html`). Only files directly in `web/`.
pub fn asset(path: &str) -> Option<Asset> {
    let name = match path.strip_prefix('/')? {
        "" => "index.html",
        name => name,
    };
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return None;
    }
    let file = WEB.get_file(name)?;
    Some(Asset {
        content_type: content_type(name)?,
        body: file.contents(),
    })
}

/// Content type by extension; files of other kinds are not served.
fn content_type(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::asset;

    #[test]
    fn serves_index_at_root_and_every_module_it_loads() {
        let index = asset("/").unwrap();
        assert!(index.content_type.starts_with("text/html"));
        let html = std::str::from_utf8(index.body).unwrap();
        for script in html.split("src=\"").skip(1) {
            let name = script.split('"').next().unwrap().trim_start_matches("./");
            let module = asset(&format!("/{name}")).unwrap_or_else(|| panic!("{name} embedded"));
            assert!(module.content_type.starts_with("text/javascript"));
        }
    }

    #[test]
    fn serves_nothing_outside_web() {
        for path in [
            "/nope",
            "/../Cargo.toml",
            "/..",
            "/.hidden",
            "/a/b.js",
            "index.html",
        ] {
            assert!(asset(path).is_none(), "{path}");
        }
    }
}
