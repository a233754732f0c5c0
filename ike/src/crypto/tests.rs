use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

#[test]
fn hmac_rfc2202_rfc4231_jefe() {
    let d: &[&[u8]] = &[b"what do ya ", b"want for nothing?"];
    let cases = [
        (HashAlg::Md5, "750c783e6ab0b503eaa86e310a5db738"),
        (HashAlg::Sha1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (
            HashAlg::Sha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            HashAlg::Sha384,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            HashAlg::Sha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ];
    for (alg, want) in cases {
        assert_eq!(
            alg.prf(b"Jefe", d).as_slice(),
            h(want).as_slice(),
            "{alg:?}"
        );
        assert_eq!(alg.output_len(), want.len() / 2);
    }
}

#[test]
fn cbc_known_answers() {
    // NIST SP 800-38A F.2.1 (AES-128-CBC, first block).
    let mut b = h("6bc1bee22e409f96e93d7e117393172a");
    let key = h("2b7e151628aed2a6abf7158809cf4f3c");
    let iv = h("000102030405060708090a0b0c0d0e0f");
    EncrAlg::Aes128.encrypt(&key, &iv, &mut b).unwrap();
    assert_eq!(b, h("7649abac8119b246cee98e9b12e9197d"));
    EncrAlg::Aes128.decrypt(&key, &iv, &mut b).unwrap();
    assert_eq!(b, h("6bc1bee22e409f96e93d7e117393172a"));
    // Cross-checked with `openssl enc -nopad` ("Now is the time ").
    let pt = h("4e6f77206973207468652074696d6520");
    let cases = [
        (
            EncrAlg::Des,
            "0123456789abcdef",
            "1234567890abcdef",
            "e5c7cdde872bf27c43e934008c389c0f",
        ),
        (
            EncrAlg::TripleDes,
            "0123456789abcdef23456789abcdef01456789abcdef0123",
            "1234567890abcdef",
            "f3c0ff026c023089656fbb169def7edb",
        ),
        (
            EncrAlg::Aes192,
            "000102030405060708090a0b0c0d0e0f1011121314151617",
            "0f0e0d0c0b0a09080706050403020100",
            "e4f8d1a247d4d88a103e1c3aadaa4f95",
        ),
        (
            EncrAlg::Aes256,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "0f0e0d0c0b0a09080706050403020100",
            "36326aedd88b3b92f2c0a4522f53d4a8",
        ),
    ];
    for (alg, k, iv, want) in cases {
        let mut b = pt.clone();
        alg.encrypt(&h(k), &h(iv), &mut b).unwrap();
        assert_eq!(b, h(want), "{alg:?}");
        alg.decrypt(&h(k), &h(iv), &mut b).unwrap();
        assert_eq!(b, pt);
    }
    assert_eq!(
        EncrAlg::Des.encrypt(&[0; 8], &[0; 8], &mut [0; 7]),
        Err(CryptoError::BlockLength(7))
    );
    assert_eq!(
        EncrAlg::Aes128.encrypt(&[0; 5], &[0; 16], &mut [0; 16]),
        Err(CryptoError::KeyLength(5))
    );
}

#[test]
fn modp_known_answers() {
    // Expected values computed independently with Python's pow().
    let x = h(&format!("8{}", "1".repeat(63)));
    let y = h(&format!("9{}", "2".repeat(63)));
    let gx = GroupId::Modp1024.modp(&[2], &x, false).unwrap();
    assert_eq!(
        hex::encode(&*gx),
        "f2f04d0fcf5ef7e9954a151d9c3adb1737dd734cf811c415cd974602a65970aba83c12c72893ba8046e2caf18f7a8cbdd77c178a5a43ce382783bb0e6a7ed0c2bca4747f8a0f40bd1cb540c9129366eabf721c0e3f1af62919217d16f1475ffa6ee39b515b282110191bee4a889e717f1cae7b31335b23f443c0c168cf9054c6"
    );
    let gy = GroupId::Modp1024.modp(&[2], &y, false).unwrap();
    let s = GroupId::Modp1024
        .shared(&DhPrivate::from_bytes(&x), &gy)
        .unwrap();
    assert_eq!(
        hex::encode(&*s),
        "1fe01d18997ca1e2ad5e800e197f473539ea4a35a214e22e982e3881d2be61b6562fcb2fbf2026ffb29d2ed6cdca11f50f0bcaf1e3ff5c2e9819f8646cf129e6636d07bc85abfcee680bced39390c9fca7680068deb4bff664588803b197360f0ef12eecce2dc024a4b48b4e1ac2c75c1feaf8ecec784893b6e4b3d5ab0e8b09"
    );
    let gx14 = GroupId::Modp2048.modp(&[2], &x, false).unwrap();
    assert!(hex::encode(&*gx14).starts_with("49536246d30d97c2174ec7e968a2cb8d"));
    assert!(hex::encode(&*gx14).ends_with("1ba0571fa7d2db0936"));
}

#[test]
fn modp_rejects_bad_peer_values() {
    let g = GroupId::Modp768;
    let x = DhPrivate::from_bytes(&[7; 32]);
    let mut one = vec![0u8; 96];
    one[95] = 1;
    assert!(g.shared(&x, &one).is_err());
    assert!(g.shared(&x, &[0u8; 96]).is_err());
    assert!(g.shared(&x, &[0xffu8; 96]).is_err()); // >= p
    let p = h(primes::GROUP1);
    let mut pm1 = p.clone();
    pm1[95] -= 1;
    assert!(g.shared(&x, &pm1).is_err());
    assert!(g.shared(&x, &[2u8; 95]).is_err()); // wrong length
}

#[test]
fn all_groups_agree() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for g in [
        GroupId::Modp768,
        GroupId::Modp1024,
        GroupId::Modp1536,
        GroupId::Modp2048,
        GroupId::Modp3072,
        GroupId::Modp4096,
        GroupId::Ecp256,
        GroupId::Ecp384,
    ] {
        let (a, pa) = g.generate(&mut rng);
        let (b, pb) = g.generate(&mut rng);
        assert_eq!(pa.len(), g.public_len());
        let s1 = g.shared(&a, &pb).unwrap();
        let s2 = g.shared(&b, &pa).unwrap();
        assert_eq!(*s1, *s2, "{g:?}");
        assert_eq!(GroupId::from_ike(g.ike_id() as u64), Some(g));
    }
}

#[test]
fn ecp256_rfc5903_vector() {
    let g = GroupId::Ecp256;
    let i = DhPrivate::from_bytes(&h(
        "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
    ));
    let gr = h(
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63
                56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
    );
    let s = g.shared(&i, &gr).unwrap();
    assert_eq!(
        *s,
        h("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
    );
    // A point off the curve is rejected.
    let mut bad = gr.clone();
    bad[63] ^= 1;
    assert!(g.shared(&i, &bad).is_err());
}
