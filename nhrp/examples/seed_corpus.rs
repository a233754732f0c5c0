//! Writes each NHRP packet (NHRP bytes only) and each malformed frame of
//! the given captures into a fuzz corpus directory.
//!
//! ```text
//! cargo run -p dmvpn-nhrp --example seed_corpus -- DIR FILE...
//! ```

#[path = "../tests/common/pcapread.rs"]
mod pcapread;

use dmvpn_nhrp::capture::extract_nhrp;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, files)) = args.split_first() else {
        eprintln!("usage: seed_corpus DIR FILE...");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("seed_corpus: cannot create {dir}: {e}");
        std::process::exit(2);
    }
    let mut n = 0;
    for file in files {
        let frames = pcapread::read_frames(file).unwrap_or_else(|e| {
            eprintln!("seed_corpus: {e}");
            std::process::exit(2);
        });
        for f in frames {
            let bytes = match extract_nhrp(f.linktype, &f.data) {
                Ok(Some(x)) => x.nhrp.to_vec(),
                Ok(None) => continue,
                Err(_) => f.data.clone(),
            };
            let name = format!("{dir}/seed-{n:03}");
            if let Err(e) = std::fs::write(&name, bytes) {
                eprintln!("seed_corpus: {name}: {e}");
                std::process::exit(2);
            }
            n += 1;
        }
    }
    println!("{n} seeds written to {dir}");
}
