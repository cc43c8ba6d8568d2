fn main() {
    // SystemView's C code is built by systemview-target with arm-none-eabi-gcc; on thumbv6m it
    // needs libgcc's helpers (division) from the same toolchain.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv6m") {
        if let Ok(out) = std::process::Command::new("arm-none-eabi-gcc")
            .args(["-mthumb", "-mcpu=cortex-m0", "-print-libgcc-file-name"])
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Some(dir) = std::path::Path::new(&path).parent() {
                println!("cargo:rustc-link-search={}", dir.display());
                println!("cargo:rustc-link-lib=static=gcc");
            }
        }
    }
}
