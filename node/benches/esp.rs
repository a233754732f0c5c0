//! Per-packet ESP seal and open of 1400-byte payloads for each transform,
//! reported as throughput in payload bytes; `seal8` lays out eight packets
//! and finishes them together, as the data plane does per batch (DES and
//! 3DES also as `seal16`, the data plane's full group); `open8`
//! computes eight received packets' ICVs together, then opens each. Compare with
//! `scripts/bench-openssl.sh` (OpenSSL `speed -evp` at 1424-byte blocks).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmvpn_node::datapath::esp::{AuthAlg, EncAlg, IvGen, MAX_ICV_LEN, SEAL_GROUP, Transform};
use dmvpn_node::datapath::hmac_sha1::{Backend, HmacSha1Key};
use std::hint::black_box;
use std::time::Duration;

const PAYLOAD: usize = 1400;

const CASES: [(&str, EncAlg, AuthAlg); 9] = [
    ("aes128-sha1", EncAlg::AesCbc128, AuthAlg::HmacSha1_96),
    ("aes256-sha1", EncAlg::AesCbc256, AuthAlg::HmacSha1_96),
    ("aes128-sha256", EncAlg::AesCbc128, AuthAlg::HmacSha256_128),
    ("aes128-md5", EncAlg::AesCbc128, AuthAlg::HmacMd5_96),
    ("aes128-null", EncAlg::AesCbc128, AuthAlg::None),
    ("3des-sha1", EncAlg::Des3Cbc, AuthAlg::HmacSha1_96),
    ("des-md5", EncAlg::DesCbc, AuthAlg::HmacMd5_96),
    ("aes128gcm16", EncAlg::AesGcm128, AuthAlg::None),
    ("aes256gcm16", EncAlg::AesGcm256, AuthAlg::None),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("esp");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, enc, auth) in CASES {
        // Distinct bytes: a repeated byte would make a weak (refused) DES key.
        let ek: Vec<u8> = (0..enc.key_len() as u8).map(|i| 0x11 + i).collect();
        let ak = vec![0x22u8; auth.key_len()];
        let t = Transform::new(enc, &ek, auth, &ak).expect("valid keys");
        let ivg = IvGen::new(enc, &[0x33; 24]);
        let payload = vec![0xabu8; PAYLOAD];
        let mut out = vec![0u8; 2048];
        let mut seq = 0u64;
        g.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| {
                seq += 1;
                let mut iv = [0u8; 16];
                ivg.fill(seq, &mut iv[..enc.iv_len()]);
                let n = t
                    .seal(
                        0x1234,
                        seq as u32,
                        &iv[..enc.iv_len()],
                        47,
                        black_box(&payload),
                        &mut out,
                    )
                    .unwrap();
                black_box(n)
            })
        });
        // DES and 3DES also in the data plane's full group, which fills
        // the AVX-512 lanes.
        let groups: &[usize] = match enc {
            EncAlg::DesCbc | EncAlg::Des3Cbc => &[8, SEAL_GROUP],
            _ => &[8],
        };
        for &group in groups {
            let mut outs = vec![vec![0u8; 2048]; group];
            g.throughput(Throughput::Bytes((group * PAYLOAD) as u64));
            g.bench_function(format!("seal{group}/{name}"), |b| {
                b.iter(|| {
                    let mut lens = [0usize; SEAL_GROUP];
                    for (k, o) in outs.iter_mut().enumerate() {
                        seq += 1;
                        let mut iv = [0u8; 16];
                        ivg.fill(seq, &mut iv[..enc.iv_len()]);
                        lens[k] = t
                            .seal_layout(
                                0x1234,
                                seq as u32,
                                &iv[..enc.iv_len()],
                                47,
                                black_box(&payload),
                                o,
                            )
                            .unwrap();
                    }
                    let mut refs: Vec<&mut [u8]> = outs
                        .iter_mut()
                        .zip(lens)
                        .map(|(o, n)| &mut o[..n])
                        .collect();
                    t.seal_finish(&mut refs);
                    black_box(&outs);
                })
            });
        }
        g.throughput(Throughput::Bytes(PAYLOAD as u64));
        let mut iv = [0u8; 16];
        ivg.fill(1, &mut iv[..enc.iv_len()]);
        let n = t
            .seal(0x1234, 1, &iv[..enc.iv_len()], 47, &payload, &mut out)
            .unwrap();
        let pkt = out[..n].to_vec();
        let mut plain = vec![0u8; 2048];
        g.bench_function(format!("open/{name}"), |b| {
            b.iter(|| black_box(t.open(black_box(&pkt), &mut plain).unwrap()))
        });
        // Eight received packets: their ICVs computed together, then each opened.
        let pkts: Vec<Vec<u8>> = (0..8u32)
            .map(|k| {
                let mut o = vec![0u8; 2048];
                let n = t
                    .seal(0x1234, k + 1, &iv[..enc.iv_len()], 47, &payload, &mut o)
                    .unwrap();
                o.truncate(n);
                o
            })
            .collect();
        let refs: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
        let mut icvs = [[0u8; MAX_ICV_LEN]; 8];
        g.throughput(Throughput::Bytes(8 * PAYLOAD as u64));
        g.bench_function(format!("open8/{name}"), |b| {
            b.iter(|| {
                t.icvs(black_box(&refs), &mut icvs);
                for (p, icv) in refs.iter().zip(&icvs) {
                    black_box(t.open_with(p, &mut plain, Some(icv)).unwrap());
                }
            })
        });
        g.throughput(Throughput::Bytes(PAYLOAD as u64));
    }
    g.finish();
}

/// HMAC-SHA1 alone over 1424-byte messages (OpenSSL's `-bytes 1424`), one
/// at a time and eight as a batch, on each block function.
fn bench_hmac(c: &mut Criterion) {
    const LEN: usize = 1424;
    let mut g = c.benchmark_group("hmac-sha1");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let msgs: Vec<Vec<u8>> = (0..8u8).map(|k| vec![k; LEN]).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    for (name, backend) in [("sha-ni", Backend::ShaNi), ("portable", Backend::Portable)] {
        let key = HmacSha1Key::with_backend(&[0x22; 20], backend);
        if key.backend() != backend {
            continue;
        }
        g.throughput(Throughput::Bytes(LEN as u64));
        g.bench_function(format!("one/{name}"), |b| {
            b.iter(|| black_box(key.compute(black_box(&msgs[0]))))
        });
        g.throughput(Throughput::Bytes(8 * LEN as u64));
        let mut tags = [[0u8; 20]; 8];
        g.bench_function(format!("batch8/{name}"), |b| {
            b.iter(|| {
                key.compute_many(black_box(&refs), &mut tags);
                black_box(&tags);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_hmac);
criterion_main!(benches);
