//! `dibop connector build [DIR]`: builds a connector project (`dibop connector new`) into
//! `DIR/dist/NAME.wasm` with the pinned tools, installing them the first time under
//! `$DIBOP_TOOLS_DIR` (default `~/.cache/dibop-tools`, shared with `scripts/build-connectors.sh`):
//! Rust with cargo for `wasm32-wasip2`; JavaScript with componentize-js (the npm packages of
//! `plugins/js/package-lock.json`), after appending the DIBOP glue (`sdk/js/dibop.mjs`) to
//! `src/connector.js`; Python with componentize-py (`plugins/python/requirements.txt`) over the
//! project's modules (tests left out). The WIT package is embedded in `dibop`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// The WIT package, as `wit/` has it.
const WIT: &[(&str, &str)] = &[
    ("plugin.wit", include_str!("../../../wit/plugin.wit")),
    ("deps/cli@0.2.12/cli.wit", include_str!("../../../wit/deps/cli@0.2.12/cli.wit")),
    ("deps/clocks@0.2.12/clocks.wit", include_str!("../../../wit/deps/clocks@0.2.12/clocks.wit")),
    ("deps/filesystem@0.2.12/filesystem.wit", include_str!("../../../wit/deps/filesystem@0.2.12/filesystem.wit")),
    ("deps/http@0.2.12/http.wit", include_str!("../../../wit/deps/http@0.2.12/http.wit")),
    ("deps/io@0.2.12/io.wit", include_str!("../../../wit/deps/io@0.2.12/io.wit")),
    ("deps/random@0.2.12/random.wit", include_str!("../../../wit/deps/random@0.2.12/random.wit")),
    ("deps/sockets@0.2.12/sockets.wit", include_str!("../../../wit/deps/sockets@0.2.12/sockets.wit")),
];
const WORLD: &str = "dibop:plugin/connector-with-capabilities@0.1.0";
const JS_PACKAGE: &str = include_str!("../../../plugins/js/package.json");
const JS_LOCK: &str = include_str!("../../../plugins/js/package-lock.json");
const JS_GLUE: &str = include_str!("../../../sdk/js/dibop.mjs");
const PY_REQUIREMENTS: &str = include_str!("../../../plugins/python/requirements.txt");

/// The componentize-js call (run with the tools' node_modules): `node build.mjs SOURCE WIT OUT`.
const JS_BUILD: &str = r#"import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
const [sourcePath, witPath, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath, witPath, worldName: 'dibop:plugin/connector-with-capabilities@0.1.0',
  // Only outbound HTTP (fetch) and clocks; no stdio, no randomness.
  disableFeatures: ['random', 'fetch-event'],
});
await writeFile(out, component);
"#;

/// Where the pinned tools are installed.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DIBOP_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("dibop-tools")
}

/// Builds the project in `dir`; answers the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = dir.canonicalize().with_context(|| format!("no project at {}", dir.display()))?;
    let started = Instant::now();
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("connector").to_owned();
    std::fs::create_dir_all(dir.join("dist"))?;
    let out = if dir.join("Cargo.toml").is_file() {
        build_rust(&dir)?
    } else if dir.join("src").join("connector.js").is_file() {
        build_js(&dir, &name)?
    } else if dir.join("app.py").is_file() {
        build_python(&dir, &name)?
    } else {
        bail!(
            "{} is not a connector project: expected Cargo.toml (Rust), src/connector.js (JavaScript) or app.py \
             (Python); `dibop connector new` writes one",
            dir.display()
        );
    };
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!("built {} ({} KiB) in {:.1} s", out.display(), size / 1024, started.elapsed().as_secs_f64());
    Ok(out)
}

/// Runs `command`, failing with its name when it fails. Its output goes to stderr: stdout is
/// the built component's path alone.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    command.stdout(std::process::Stdio::from(stderr));
    let status = command.status().with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn found(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Installs Debian packages when a tool is missing and this is root on Debian; otherwise says
/// what to install.
fn ensure_packages(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root || !found("apt-get") {
        bail!("install {} first (on Debian: apt-get install {})", missing.join(", "), missing.join(" "));
    }
    eprintln!("installing {} (once)", missing.join(", "));
    run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")?;
    run(
        Command::new("apt-get").args(["install", "-y", "-qq"]).args(missing).env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

fn write_wit(into: &Path) -> anyhow::Result<()> {
    for (path, text) in WIT {
        let target = into.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(into))?;
        std::fs::write(&target, text)?;
    }
    Ok(())
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml"))?)
        .context("Cargo.toml does not read as TOML")?;
    let package = manifest.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str());
    let package = package.context("Cargo.toml has no [package] name")?.to_owned();
    if found("rustup") {
        // Offline or already there, this changes nothing; cargo below says what is missing.
        let _ = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).output();
    }
    run(
        Command::new("cargo").args(["build", "--release", "--target", "wasm32-wasip2"]).current_dir(dir),
        "cargo build",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
    let target = if target.is_relative() { dir.join(target) } else { target };
    let built = target.join("wasm32-wasip2").join("release").join(format!("{}.wasm", package.replace('-', "_")));
    let out = dir.join("dist").join(format!("{package}.wasm"));
    std::fs::copy(&built, &out).with_context(|| format!("copying {}", built.display()))?;
    Ok(out)
}

/// The connector's source with its `import ... from 'dibop'` blanked (line numbers kept) and
/// the glue appended; the glue knows how many lines are the author's.
pub fn js_bundle(source: &str) -> String {
    let import = regex::Regex::new(r#"import\s*\{[^}]*\}\s*from\s*['"]dibop['"]\s*;?"#).expect("a valid pattern");
    let body = import.replace_all(source, |found: &regex::Captures<'_>| "\n".repeat(found[0].matches('\n').count()));
    let lines = body.lines().count();
    format!(
        "{body}\n// ---- line {lines} ends the connector's own code\nconst __DIBOP_AUTHOR_LINES = {lines};\n{JS_GLUE}"
    )
}

fn build_js(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let mut missing = Vec::new();
    if !found("node") {
        missing.push("nodejs");
    }
    if !found("npm") {
        missing.push("npm");
    }
    ensure_packages(&missing)?;
    let tools = tools_dir().join("js");
    std::fs::create_dir_all(&tools)?;
    let lock = dibop_core::sha256_hex(JS_LOCK.as_bytes());
    let marker = tools.join("node_modules").join(".dibop-lock");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(lock.as_str()) {
        eprintln!("installing componentize-js into {} (once)", tools.display());
        std::fs::write(tools.join("package.json"), JS_PACKAGE)?;
        std::fs::write(tools.join("package-lock.json"), JS_LOCK)?;
        run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&tools),
            "npm ci (componentize-js)",
        )?;
        std::fs::write(&marker, &lock)?;
    }
    std::fs::write(tools.join("dibop-build.mjs"), JS_BUILD)?;
    let work = dir.join(".build");
    write_wit(&work.join("wit"))?;
    let source = std::fs::read_to_string(dir.join("src").join("connector.js"))?;
    let bundle = work.join("connector.js");
    std::fs::write(&bundle, js_bundle(&source))?;
    let out = dir.join("dist").join(format!("{name}.wasm"));
    run(
        Command::new("node").arg(tools.join("dibop-build.mjs")).arg(&bundle).arg(work.join("wit")).arg(&out),
        "componentize-js",
    )?;
    Ok(out)
}

fn build_python(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let mut missing = Vec::new();
    if !found("python3") {
        missing.push("python3");
    }
    let venv_ok =
        Command::new("python3").args(["-c", "import venv, ensurepip"]).output().is_ok_and(|o| o.status.success());
    if !venv_ok {
        missing.push("python3-venv");
    }
    ensure_packages(&missing)?;
    let wanted = PY_REQUIREMENTS
        .lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .context("the pinned componentize-py version")?;
    let venv = tools_dir().join("py");
    let tool = venv.join("bin").join("componentize-py");
    let have = Command::new(&tool)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have.as_deref() != Some(format!("componentize-py {wanted}").as_str()) {
        eprintln!("installing componentize-py {wanted} into {} (once)", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
        run(
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={wanted}")),
            "pip install componentize-py",
        )?;
    }
    // The component gets the project's modules, not its tests or build outputs.
    let work = dir.join(".build");
    let modules = work.join("py");
    let _ = std::fs::remove_dir_all(&modules);
    std::fs::create_dir_all(&modules)?;
    write_wit(&work.join("wit"))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if file.ends_with(".py") && !file.starts_with("test_") {
            std::fs::copy(&path, modules.join(&file))?;
        }
    }
    let out = dir.join("dist").join(format!("{name}.wasm"));
    run(
        Command::new(&tool)
            .arg("-d")
            .arg(work.join("wit"))
            .args(["-w", WORLD, "componentize", "-p"])
            .arg(&modules)
            .args(["app", "-o"])
            .arg(&out),
        "componentize-py",
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundle_keeps_the_authors_line_numbers() {
        let source = "// one\nimport { PluginError,\n  log } from 'dibop';\nexport const connector = {};\nthrow 1;\n";
        let bundle = super::js_bundle(source);
        let lines: Vec<&str> = bundle.lines().collect();
        assert_eq!(lines[3], "export const connector = {};");
        assert_eq!(lines[4], "throw 1;");
        assert!(!lines[..5].concat().contains("dibop"), "the import is gone: {bundle}");
        assert!(bundle.contains("const __DIBOP_AUTHOR_LINES = 5;"), "{bundle}");
        assert!(bundle.contains("export function describe()"));
    }
}
