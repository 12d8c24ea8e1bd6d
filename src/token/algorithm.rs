//! The JWS algorithms bearer-guard verifies, and the one place each is verified: through the
//! host's crypto when it has one, else in wasm.

use jwt_compact::{
    alg::{Ed25519, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaSignature},
    Algorithm as _, AlgorithmSignature,
};
use p256::ecdsa::signature::Verifier as _;
use std::borrow::Cow;

use crate::keys::host_crypto::{HashName, HostCheck, HostCrypto};
use crate::keys::material::KeyMaterial;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

/// How a token's `alg` header is classified before any key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmClass {
    Supported(Algorithm),
    /// `none` in any letter case (RFC 8725 §3.1).
    Unsigned,
    Unsupported,
}

impl Algorithm {
    pub const ALL: [Algorithm; 13] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Es512,
        Algorithm::EdDsa,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn classify(name: &str) -> AlgorithmClass {
        if let Some(alg) = Algorithm::from_name(name) {
            AlgorithmClass::Supported(alg)
        } else if name.eq_ignore_ascii_case("none") {
            AlgorithmClass::Unsigned
        } else {
            AlgorithmClass::Unsupported
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// HMAC: the key is a shared secret. Never the default (RFC 8725 §3.1, §3.2).
    pub fn is_symmetric(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }

    /// Which digest the host is asked for; `None`: the host cannot verify this algorithm
    /// (PSS padding cannot be requested, EdDSA has no pre-hash, HMAC is cheap in wasm).
    fn host_hash(self) -> Option<HashName> {
        match self {
            Algorithm::Rs256 | Algorithm::Es256 => Some(HashName::Sha256),
            Algorithm::Rs384 | Algorithm::Es384 => Some(HashName::Sha384),
            Algorithm::Rs512 | Algorithm::Es512 => Some(HashName::Sha512),
            _ => None,
        }
    }

    /// Whether a key of this material may be used with this algorithm.
    pub fn fits(self, material: &KeyMaterial) -> bool {
        use Algorithm::*;
        match material {
            KeyMaterial::Rsa(_) => matches!(self, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512),
            KeyMaterial::P256(_) => self == Es256,
            KeyMaterial::P384 => self == Es384,
            KeyMaterial::P521 => self == Es512,
            KeyMaterial::Ed25519(_) => self == EdDsa,
            // RFC 7518 §3.2: the secret is at least as long as the hash output.
            KeyMaterial::Hmac(secret) => match self {
                Hs256 => secret.len() >= 32,
                Hs384 => secret.len() >= 48,
                Hs512 => secret.len() >= 64,
                _ => false,
            },
        }
    }

    /// Verifies `signature` over `signed_data` (the JWS signing input). Through `host` when
    /// given and the host can; if the host cannot run the check, in wasm. A signature that
    /// cannot even be decoded for this algorithm is simply not valid.
    pub fn verify(
        self,
        material: &KeyMaterial,
        spki_der: &[u8],
        signed_data: &[u8],
        signature: &[u8],
        host: Option<&dyn HostCrypto>,
    ) -> bool {
        if !canonical_rsa_signature(material, signature) {
            return false;
        }
        if let (Some(host), Some(hash)) = (host, self.host_hash()) {
            let Some(host_signature) = self.host_signature(signature) else {
                return false;
            };
            let check = HostCheck {
                hash,
                public_key_der: spki_der,
                signature: &host_signature,
                text: signed_data,
            };
            if let Ok(valid) = host.verify(&check) {
                return valid;
            }
        }
        self.verify_in_wasm(material, signed_data, signature)
    }

    /// The signature as BoringSSL's `EVP_DigestVerify` takes it: RSA as is (borrowed), ECDSA's
    /// JWS `r || s` (RFC 7518 §3.4) as an ASN.1 DER `ECDSA-Sig-Value`.
    fn host_signature(self, signature: &[u8]) -> Option<Cow<'_, [u8]>> {
        let order: &[u8] = match self {
            Algorithm::Es256 => &P256_ORDER,
            Algorithm::Es384 => &P384_ORDER,
            Algorithm::Es512 => &P521_ORDER,
            _ => return Some(Cow::Borrowed(signature)),
        };
        ecdsa_signature_der(signature, order).map(Cow::Owned)
    }

    /// ES384/ES512 need the host: jwt-compact has no P-384/P-521, and carrying their
    /// arithmetic would double the filter's size for a path Envoy never takes.
    pub fn verifies_in_wasm(self) -> bool {
        !matches!(self, Algorithm::Es384 | Algorithm::Es512)
    }

    /// Fixed signature lengths. jwt-compact 0.8's `try_from_slice` for Ed25519 and HMAC
    /// signatures panics on any other length (found by `make fuzz`): checked first.
    fn fixed_signature_len(self) -> Option<usize> {
        match self {
            Algorithm::EdDsa | Algorithm::Hs512 => Some(64),
            Algorithm::Hs256 => Some(32),
            Algorithm::Hs384 => Some(48),
            _ => None,
        }
    }

    fn verify_in_wasm(self, material: &KeyMaterial, signed_data: &[u8], signature: &[u8]) -> bool {
        if self
            .fixed_signature_len()
            .is_some_and(|len| signature.len() != len)
        {
            return false;
        }
        let rsa = |alg: Rsa, key| {
            RsaSignature::try_from_slice(signature)
                .is_ok_and(|sig| alg.verify_signature(&sig, key, signed_data))
        };
        match (self, material) {
            (Algorithm::Rs256, KeyMaterial::Rsa(key)) => rsa(Rsa::rs256(), key.key()),
            (Algorithm::Rs384, KeyMaterial::Rsa(key)) => rsa(Rsa::rs384(), key.key()),
            (Algorithm::Rs512, KeyMaterial::Rsa(key)) => rsa(Rsa::rs512(), key.key()),
            (Algorithm::Ps256, KeyMaterial::Rsa(key)) => rsa(Rsa::ps256(), key.key()),
            (Algorithm::Ps384, KeyMaterial::Rsa(key)) => rsa(Rsa::ps384(), key.key()),
            (Algorithm::Ps512, KeyMaterial::Rsa(key)) => rsa(Rsa::ps512(), key.key()),
            (Algorithm::Es256, KeyMaterial::P256(key)) => {
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(signed_data, &sig).is_ok())
            }
            (Algorithm::EdDsa, KeyMaterial::Ed25519(key)) => {
                ed25519_compact::Signature::try_from_slice(signature)
                    .is_ok_and(|sig| Ed25519.verify_signature(&sig, key, signed_data))
            }
            (Algorithm::Hs256, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs256.verify_signature(&sig, &Hs256Key::new(secret), signed_data)
                })
            }
            (Algorithm::Hs384, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs384.verify_signature(&sig, &Hs384Key::new(secret), signed_data)
                })
            }
            (Algorithm::Hs512, KeyMaterial::Hmac(secret)) => {
                AlgorithmSignature::try_from_slice(signature).is_ok_and(|sig| {
                    Hs512.verify_signature(&sig, &Hs512Key::new(secret), signed_data)
                })
            }
            _ => false,
        }
    }
}

/// RFC 8017 §5.2.2 / §8.1.2: an RSA signature is exactly the modulus length and below the
/// modulus. Checked before any verifier sees it: `s + n` is `s` modulo `n`, and the `rsa`
/// crate's PSS path accepts it, which would give a token a second spelling (a new whole-token
/// hash) from the issuer's one signature. Other key types have no such check to make here.
fn canonical_rsa_signature(material: &KeyMaterial, signature: &[u8]) -> bool {
    match material {
        KeyMaterial::Rsa(key) => key.takes_signature_of_form(signature),
        _ => true,
    }
}

/// The group orders `n` of P-256, P-384 and P-521 (SEC 2 §2.4.2, §2.5.1, §2.6.1), big-endian
/// at the width of the curve's JWS scalars (RFC 7518 §3.4). Tested against the curve crates'.
const P256_ORDER: [u8; 32] =
    hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
const P384_ORDER: [u8; 48] = hex_bytes(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
);
const P521_ORDER: [u8; 66] = hex_bytes(
    "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
);

// Evaluated at compile time: a wrong index is a build error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn hex_bytes<const N: usize>(hex: &str) -> [u8; N] {
    let hex = hex.as_bytes();
    assert!(hex.len() == 2 * N, "two hex digits per byte");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (hex_digit(hex[2 * i]) << 4) | hex_digit(hex[2 * i + 1]);
        i += 1;
    }
    out
}

// Only the order constants above call it, at compile time: a bad digit fails the build.
#[allow(clippy::panic)]
const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("a lowercase hex digit"),
    }
}

/// JWS ECDSA `r || s` as DER, written directly (the curve crates' `Signature::from_slice` and
/// `to_der` went through their big-integer types: 0.7 us of an ES256 miss in V8). The same
/// checks as theirs: exactly two scalars of the curve's width, each in `[1, n - 1]` (equal-width
/// big-endian bytes compare as the numbers do); anything else has no DER form and is not a
/// valid signature. DER integers are minimal and signed: leading zeros dropped, one put back
/// when the top bit is set.
fn ecdsa_signature_der(signature: &[u8], order: &[u8]) -> Option<Vec<u8>> {
    let width = order.len();
    if signature.len() != 2 * width {
        return None;
    }
    let (r, s) = signature.split_at(width);
    let in_range = |x: &[u8]| x.iter().any(|&b| b != 0) && x < order;
    if !in_range(r) || !in_range(s) {
        return None;
    }
    // Each scalar's significant bytes (none is zero, checked above), and whether the top bit
    // of the first is set: a DER INTEGER is signed, so a zero byte then goes before it.
    fn integer(x: &[u8]) -> (&[u8], bool) {
        let start = x.iter().position(|&b| b != 0).unwrap_or(x.len());
        let digits = x.get(start..).unwrap_or_default();
        (digits, digits.first().is_some_and(|&b| b & 0x80 != 0))
    }
    let integers = [integer(r), integer(s)];
    let encoded_len = |(digits, pad): (&[u8], bool)| digits.len() + usize::from(pad);
    // Each integer is at most 66 bytes (P-521: r, s < n < 2^521 leave the top bit of a full
    // 66-byte scalar clear), so its own length fits in one byte; the sequence's may not
    // (P-521: up to 136), and from 128 on takes the long form 0x81 n.
    let content: usize = integers.iter().map(|&i| 2 + encoded_len(i)).sum();
    let mut der = Vec::with_capacity(content + 3);
    der.push(0x30);
    if content >= 0x80 {
        der.push(0x81);
    }
    der.push(u8::try_from(content).ok()?);
    for (digits, pad) in integers {
        der.push(0x02);
        der.push(u8::try_from(encoded_len((digits, pad))).ok()?);
        if pad {
            der.push(0);
        }
        der.extend_from_slice(digits);
    }
    Some(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_algorithm_names() {
        for alg in Algorithm::ALL {
            assert_eq!(
                Algorithm::classify(alg.name()),
                AlgorithmClass::Supported(alg)
            );
        }
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Algorithm::classify(none), AlgorithmClass::Unsigned);
        }
        for other in ["rs256", "hs256", "Ed25519", "", "H", "ES256K", "RSA-OAEP"] {
            assert_eq!(Algorithm::classify(other), AlgorithmClass::Unsupported);
        }
    }

    /// JWS ECDSA signatures are fixed-width `r || s`; DER integers are minimal and signed.
    #[test]
    fn ecdsa_signatures_become_minimal_der() {
        // r = 1 (31 leading zero bytes), s = 0x80 followed by zeros (high bit set).
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = Algorithm::Es256.host_signature(&raw).unwrap();
        let mut expected = vec![0x30, 3 + 35, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        expected.extend_from_slice(&[0u8; 31]);
        assert_eq!(der, expected);

        // Both high bits clear and no leading zeros: plain 32-byte integers.
        let raw = [0x11u8; 64];
        let der = Algorithm::Es256.host_signature(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 68, 0x02, 32]);
        assert_eq!(der.len(), 70);
    }

    #[test]
    fn invalid_ecdsa_signatures_have_no_der_form() {
        assert_eq!(
            Algorithm::Es256.host_signature(&[0u8; 64]),
            None,
            "r = s = 0"
        );
        assert_eq!(
            Algorithm::Es256.host_signature(&[1u8; 63]),
            None,
            "wrong length"
        );
        assert_eq!(
            Algorithm::Es384.host_signature(&[1u8; 64]),
            None,
            "P-256 length for ES384"
        );
        assert_eq!(
            Algorithm::Es512.host_signature(&[0xffu8; 132]),
            None,
            "scalars >= n"
        );
    }

    /// The DER written here is what the curve crates write, and refused where they refuse:
    /// at and around `n`, zero, lengths, top bits and leading zeros, and pseudo-random scalars.
    #[test]
    fn ecdsa_der_matches_the_curve_crates() {
        fn crate_der(alg: Algorithm, raw: &[u8]) -> Option<Vec<u8>> {
            match alg {
                Algorithm::Es256 => p256::ecdsa::Signature::from_slice(raw)
                    .ok()
                    .map(|s| s.to_der().as_bytes().to_vec()),
                Algorithm::Es384 => ecdsa::Signature::<p384::NistP384>::from_slice(raw)
                    .ok()
                    .map(|s| s.to_der().as_bytes().to_vec()),
                _ => ecdsa::Signature::<p521::NistP521>::from_slice(raw)
                    .ok()
                    .map(|s| s.to_der().as_bytes().to_vec()),
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        };
        for (alg, order) in [
            (Algorithm::Es256, &P256_ORDER[..]),
            (Algorithm::Es384, &P384_ORDER[..]),
            (Algorithm::Es512, &P521_ORDER[..]),
        ] {
            let width = order.len();
            let minus = |k: u8| {
                let mut x = order.to_vec();
                let last = x.len() - 1;
                x[last] -= k;
                x
            };
            let plus_one = {
                let mut x = order.to_vec();
                let last = x.len() - 1;
                x[last] += 1;
                x
            };
            let one = {
                let mut x = vec![0u8; width];
                x[width - 1] = 1;
                x
            };
            let mut scalars = vec![
                order.to_vec(),
                plus_one,
                minus(1),
                minus(2),
                vec![0u8; width],
                vec![0xff; width],
                one,
            ];
            for lead in [0x7f, 0x80, 0x01, 0x00] {
                let mut x = minus(1);
                x[0] = if width == 66 { lead & 1 } else { lead };
                x[1] = lead;
                scalars.push(x);
            }
            for _ in 0..200 {
                let mut x: Vec<u8> = (0..width).map(|_| next()).collect();
                // Leading zero bytes now and then, and P-521's top byte within its 9 bits.
                let zeros = usize::from(next() % 4);
                x.iter_mut().take(zeros).for_each(|b| *b = 0);
                if width == 66 {
                    x[0] &= 1;
                }
                scalars.push(x);
            }
            for r in &scalars {
                for s in scalars.iter().step_by(7).chain(scalars.iter().take(11)) {
                    let raw = [r.as_slice(), s.as_slice()].concat();
                    assert_eq!(
                        alg.host_signature(&raw).map(Cow::into_owned),
                        crate_der(alg, &raw),
                        "{alg:?} r={r:02x?} s={s:02x?}"
                    );
                }
            }
            for len in [0, 1, width, 2 * width - 1, 2 * width + 1] {
                let raw = vec![1u8; len];
                assert_eq!(alg.host_signature(&raw), None, "{alg:?} {len} bytes");
                assert_eq!(crate_der(alg, &raw), None);
            }
        }
    }

    /// P-521's sequence takes the long length form from a 128-byte body on: 127 and 128 exactly.
    #[test]
    fn p521_der_length_form_switches_at_128() {
        // r: 62 significant bytes, top bit clear (4 leading zeros); s: 61 or 62 likewise.
        // Each INTEGER is 2 + its length, so the bodies are 64 + 63 = 127 and 64 + 64 = 128.
        let scalar = |significant: usize| {
            let mut x = vec![0u8; 66];
            x[66 - significant..].fill(0x11);
            x
        };
        for (s_len, body, header) in [(61, 127, &[0x30, 127][..]), (62, 128, &[0x30, 0x81, 128])] {
            let raw = [scalar(62), scalar(s_len)].concat();
            let der = Algorithm::Es512.host_signature(&raw).unwrap();
            assert_eq!(&der[..header.len()], header);
            assert_eq!(der.len(), header.len() + body);
            let crate_der = ecdsa::Signature::<p521::NistP521>::from_slice(&raw)
                .unwrap()
                .to_der();
            assert_eq!(&*der, crate_der.as_bytes());
        }
    }

    #[test]
    fn rsa_signatures_go_to_the_host_as_they_are() {
        let sig = [7u8; 256];
        assert!(matches!(
            Algorithm::Rs256.host_signature(&sig),
            Some(Cow::Borrowed(s)) if s == sig
        ));
    }

    #[test]
    fn p521_signatures_use_66_byte_scalars() {
        let mut raw = [0u8; 132];
        raw[65] = 7;
        raw[131] = 9;
        assert_eq!(
            Algorithm::Es512.host_signature(&raw).unwrap(),
            vec![0x30, 6, 0x02, 1, 7, 0x02, 1, 9]
        );
    }
}
