//! `dibop connector new NAME --lang rust|js|python`: writes a working connector project (one
//! operation against a configurable `base_url`, a unit test, a README with the walk-through and
//! an orchestration that uses it) from the templates in `sdk/templates/`, embedded here.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;

/// A connector's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

/// The files of each template: path in the project, text with `{{slug}}`, `{{name}}` and (Rust)
/// `{{sdk_path}}` placeholders.
const COMMON: &[(&str, &str)] = &[
    ("orchestration.yaml", include_str!("../../../sdk/templates/common/orchestration.yaml")),
    (".gitignore", "target/\ndist/\n.build/\nnode_modules/\n__pycache__/\n"),
];
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../sdk/templates/rust/Cargo.toml")),
    ("Cargo.lock", include_str!("../../../sdk/Cargo.lock")),
    ("src/lib.rs", include_str!("../../../sdk/templates/rust/src/lib.rs")),
    ("README.md", include_str!("../../../sdk/templates/rust/README.md")),
];
const JS: &[(&str, &str)] = &[
    ("package.json", include_str!("../../../sdk/templates/js/package.json")),
    ("src/connector.js", include_str!("../../../sdk/templates/js/src/connector.js")),
    ("test/connector.test.mjs", include_str!("../../../sdk/templates/js/test/connector.test.mjs")),
    ("test/dibop-double.mjs", include_str!("../../../sdk/templates/js/test/dibop-double.mjs")),
    ("test/register.mjs", include_str!("../../../sdk/templates/js/test/register.mjs")),
    ("test/resolve-dibop.mjs", include_str!("../../../sdk/templates/js/test/resolve-dibop.mjs")),
    ("README.md", include_str!("../../../sdk/templates/js/README.md")),
];
const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../../sdk/templates/python/app.py")),
    ("dibop.py", include_str!("../../../sdk/python/dibop.py")),
    ("test_app.py", include_str!("../../../sdk/templates/python/test_app.py")),
    ("README.md", include_str!("../../../sdk/templates/python/README.md")),
];

/// Where this build of `dibop` was compiled from has the Rust SDK (a checkout).
fn default_sdk() -> Option<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk");
    built_from.join("Cargo.toml").is_file().then(|| built_from.canonicalize().ok()).flatten()
}

/// `my-lookup` -> `My lookup`.
fn display_name(slug: &str) -> String {
    let words = slug.replace('-', " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Writes the project `parent/NAME`; answers its directory.
pub fn new(name: &str, lang: Lang, parent: &Path, sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let slug = dibop_core::Slug::parse_plugin(name).map_err(|e| {
        anyhow::anyhow!("{name:?} cannot name a connector: {e} (use lowercase letters, digits and dashes)")
    })?;
    let slug = slug.as_str().to_owned();
    let dir = parent.join(&slug);
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty; choose another name or folder", dir.display());
    }
    let sdk_path = match lang {
        Lang::Rust => {
            let sdk = sdk.or_else(default_sdk).context(
                "where is the Rust SDK? pass --sdk PATH (the sdk/ folder of a DIBOP checkout) or set DIBOP_SDK_DIR",
            )?;
            anyhow::ensure!(sdk.join("Cargo.toml").is_file(), "{} has no Cargo.toml: not the DIBOP SDK", sdk.display());
            sdk.canonicalize()?.display().to_string()
        }
        Lang::Js | Lang::Python => String::new(),
    };
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Js => JS,
        Lang::Python => PYTHON,
    };
    let name = display_name(&slug);
    for (path, text) in files.iter().chain(COMMON) {
        let text = text.replace("{{slug}}", &slug).replace("{{name}}", &name).replace("{{sdk_path}}", &sdk_path);
        let target = dir.join(path);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_slugs_and_read_as_titles() {
        assert_eq!(super::display_name("my-lookup"), "My lookup");
        let dir = std::env::temp_dir().join(format!("dibop-scaffold-{}", dibop_core::new_id()));
        assert!(super::new("Not A Slug", super::Lang::Js, &dir, None).is_err());
        let made = super::new("my-lookup", super::Lang::Python, &dir, None).expect("written");
        let app = std::fs::read_to_string(made.join("app.py")).expect("app.py");
        assert!(app.contains("slug=\"my-lookup\"") && !app.contains("{{"), "{app}");
        assert!(super::new("my-lookup", super::Lang::Python, &dir, None).is_err(), "not over a project");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
