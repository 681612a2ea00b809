//! Compiles the `.proto` sources with protox (no protoc needed) and generates
//! prost types. Also writes the encoded descriptor sets that the crate embeds.
use std::{env, path::PathBuf};

fn compile(
    files: &[&str],
    out_name: &str,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(false);
    for file in files {
        compiler.open_file(file)?;
    }
    // Encoded by protox itself so the custom options survive (prost_types drops them).
    std::fs::write(
        out_dir.join(out_name),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    let mut config = prost_build::Config::new();
    config.bytes(["."]).enable_type_names();
    config.compile_fds(only_own_files(fds))?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    for dir in ["mir", "examples"] {
        println!("cargo:rerun-if-changed={dir}");
    }
    compile(
        &["mir/device/v1/mir.proto", "mir/wire/v1/envelopes.proto"],
        "mir_descriptor_set.bin",
        &out_dir,
    )?;
    // The example compiles on its own so that its descriptor set is exactly what a
    // device built from `schema.proto` would send.
    let mut compiler = protox::Compiler::new(["examples/weather", "."])?;
    compiler
        .include_imports(true)
        .include_source_info(false)
        .open_file("examples/weather/schema/v1/schema.proto")?;
    std::fs::write(
        out_dir.join("weather_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    let mut example = fds;
    example.file.retain(|f| f.package() == "schema.v1");
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(example)?;
    Ok(())
}

/// Keeps the files this crate owns: google's well-known types come from prost-types,
/// and `mir.device.v1` is generated once.
fn only_own_files(mut fds: prost_types::FileDescriptorSet) -> prost_types::FileDescriptorSet {
    fds.file
        .retain(|f| !f.package().starts_with("google.protobuf"));
    fds
}
