//! With the `python` feature: record where the shared libpython that pyo3
//! links against lives (an rpath), so that the binary finds it without
//! `LD_LIBRARY_PATH` when that directory is not one the loader searches
//! (a pyenv or custom prefix install), and which Python it is.

fn main() {
    #[cfg(feature = "python")]
    {
        let config = pyo3_build_config::get();
        if let Some(dir) = config.lib_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
        println!(
            "cargo:rustc-env=GUNICORND_PYTHON_VERSION={}",
            config.version()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
}
