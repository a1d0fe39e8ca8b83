//! Generates the etcd client code from `proto/etcd.proto`. PROTOC is set only inside this build
//! script: raft-proto's own build accepts protoc 3.x only, so it must never see the vendored one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; the variable only affects this process.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    tonic_prost_build::configure().build_server(false).compile_protos(&["proto/etcd.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
