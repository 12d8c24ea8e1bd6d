//! Signature checks by the host: Envoy's `verify_signature` foreign function (BoringSSL).
//! This module builds and reads its protobuf messages and holds the start-up self-test; the
//! adapter alone makes the call.

use prost::Message;

/// The foreign function's name in Envoy.
pub const FUNCTION_NAME: &str = "verify_signature";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashName {
    Sha256,
    Sha384,
    Sha512,
}

impl HashName {
    pub fn as_str(self) -> &'static str {
        match self {
            HashName::Sha256 => "sha256",
            HashName::Sha384 => "sha384",
            HashName::Sha512 => "sha512",
        }
    }
}

/// One signature check, in the host's terms.
#[derive(Debug, Clone, Copy)]
pub struct HostCheck<'a> {
    pub hash: HashName,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: &'a [u8],
    /// RSA: the raw signature; ECDSA: DER `ECDSA-Sig-Value`.
    pub signature: &'a [u8],
    /// The signed bytes (for a JWS, `header "." payload` in base64url).
    pub text: &'a [u8],
}

/// Why the host could not answer; the caller then verifies in wasm instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCryptoError {
    /// The host has no such function.
    NotAvailable,
    /// The call itself failed (e.g. the key could not be imported).
    CallFailed(String),
    /// The host answered something that is not a `VerifySignatureResult`.
    BadResult,
}

/// A host that can check signatures. Implemented by the adapter over proxy-wasm.
pub trait HostCrypto {
    /// `Ok(valid)` when the host ran the check.
    fn verify(&self, check: &HostCheck<'_>) -> Result<bool, HostCryptoError>;
}

/// envoy.source.extensions.common.wasm.VerifySignatureArguments
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureArguments {
    #[prost(string, tag = "1")]
    pub hash_function: String,
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
}

/// envoy.source.extensions.common.wasm.VerifySignatureResult
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    #[prost(string, tag = "2")]
    pub error: String,
}

pub fn encode_arguments(check: &HostCheck<'_>) -> Vec<u8> {
    // Written field by field into one buffer of its final size, as prost writes the message
    // (field order, empty fields left out; a test holds the two to the same bytes): the
    // message type would first copy the key, the signature and the signed text into owned
    // fields, four allocations and about 800 bytes copied on every signature check.
    let fields: [(u8, &[u8]); 4] = [
        (1, check.hash.as_str().as_bytes()),
        (2, check.public_key_der),
        (3, check.signature),
        (4, check.text),
    ];
    let field_len = |bytes: &[u8]| {
        let len = bytes.len() as u64;
        1 + prost::encoding::encoded_len_varint(len) + bytes.len()
    };
    let present = || fields.into_iter().filter(|(_, bytes)| !bytes.is_empty());
    let mut out = Vec::with_capacity(present().map(|(_, bytes)| field_len(bytes)).sum());
    for (number, bytes) in present() {
        // Wire type 2 (length-delimited); field numbers below 16 fit the key's one byte.
        out.push(number << 3 | 2);
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
    }
    out
}

/// The start of Envoy's error text for a signature that did not verify (its crypto utility's
/// "Failed to verify digest. Error code: N"): the check ran, and the answer is no.
const VERIFY_FAILED: &str = "Failed to verify";

/// An answer with `result: false` and an error text means the check did not run.
pub fn decode_result(bytes: &[u8]) -> Result<bool, HostCryptoError> {
    // Envoy's two everyday answers, read as prost reads them, without its message type (and
    // the error's `String`): `result: true` alone (field 1, varint 1), and a signature that
    // did not verify, which Envoy sends as its error text alone (field 2, one length byte:
    // "Failed to verify digest. Error code: 0"; proto3 leaves out `result: false`). Anything
    // else is decoded in full.
    match bytes {
        [0x08, 0x01] => return Ok(true),
        [0x12, len, text @ ..]
            if *len < 0x80
                && usize::from(*len) == text.len()
                && std::str::from_utf8(text).is_ok_and(|text| text.contains(VERIFY_FAILED)) =>
        {
            return Ok(false)
        }
        _ => {}
    }
    let result = VerifySignatureResult::decode(bytes).map_err(|_| HostCryptoError::BadResult)?;
    if result.result {
        Ok(true)
    } else if result.error.is_empty() || result.error.contains(VERIFY_FAILED) {
        Ok(false)
    } else {
        Err(HostCryptoError::CallFailed(result.error))
    }
}

const KAT_MESSAGE: &[u8] = include_bytes!("host_crypto_kat/message.txt");

/// Fixed keys and signatures made with openssl; see `host_crypto_kat/`.
const KNOWN_ANSWERS: [(HashName, &[u8], &[u8]); 2] = [
    (
        HashName::Sha256,
        include_bytes!("host_crypto_kat/rsa-2048-spki.der"),
        include_bytes!("host_crypto_kat/rsa-2048-sha256.sig"),
    ),
    (
        HashName::Sha256,
        include_bytes!("host_crypto_kat/ec-p256-spki.der"),
        include_bytes!("host_crypto_kat/ec-p256-sha256.sig"),
    ),
];

/// Why the host's crypto is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfTestFailure {
    Unavailable(HostCryptoError),
    /// The host rejected a known-good signature.
    RejectedGoodSignature,
    /// The host accepted a signature over a changed message: it cannot be trusted to verify.
    AcceptedBadSignature,
}

/// Known-answer test, run once at start-up: a good signature must verify and the same
/// signature over a changed message must not.
pub fn self_test(host: &dyn HostCrypto) -> Result<(), SelfTestFailure> {
    let mut tampered = KAT_MESSAGE.to_vec();
    if let Some(first) = tampered.first_mut() {
        *first ^= 1;
    }
    for (hash, public_key_der, signature) in KNOWN_ANSWERS {
        let check = |text: &[u8]| {
            host.verify(&HostCheck {
                hash,
                public_key_der,
                signature,
                text,
            })
            .map_err(SelfTestFailure::Unavailable)
        };
        if !check(KAT_MESSAGE)? {
            return Err(SelfTestFailure::RejectedGoodSignature);
        }
        if check(&tampered)? {
            return Err(SelfTestFailure::AcceptedBadSignature);
        }
    }
    Ok(())
}

/// A host that really verifies, in software (RustCrypto), from exactly the bytes Envoy would
/// get: DER SPKI keys and DER ECDSA signatures. Tests use it to check our encodings; the CLI's
/// `explain` uses it where the filter would use Envoy, so ES384/ES512 verify there as in Envoy.
#[cfg(any(test, feature = "cli"))]
pub mod software {
    use super::*;
    use p256::pkcs8::DecodePublicKey;
    use rsa::pkcs1v15;
    use rsa::signature::Verifier;

    pub struct RustCryptoHost;

    impl HostCrypto for RustCryptoHost {
        fn verify(&self, check: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
            // Round-trip through the wire format, as the host would see it.
            let args = VerifySignatureArguments::decode(encode_arguments(check).as_slice())
                .map_err(|_| HostCryptoError::BadResult)?;
            let text = args.text.as_slice();
            if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(&args.public_key) {
                let sig = pkcs1v15::Signature::try_from(args.signature.as_slice())
                    .map_err(|e| HostCryptoError::CallFailed(e.to_string()))?;
                return Ok(match check.hash {
                    HashName::Sha256 => pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
                        .verify(text, &sig)
                        .is_ok(),
                    HashName::Sha384 => pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key)
                        .verify(text, &sig)
                        .is_ok(),
                    HashName::Sha512 => pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key)
                        .verify(text, &sig)
                        .is_ok(),
                });
            }
            if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&args.public_key) {
                let sig = p256::ecdsa::Signature::from_der(&args.signature)
                    .map_err(|e| HostCryptoError::CallFailed(e.to_string()))?;
                return Ok(key.verify(text, &sig).is_ok());
            }
            if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(&args.public_key) {
                let sig = p384::ecdsa::Signature::from_der(&args.signature)
                    .map_err(|e| HostCryptoError::CallFailed(e.to_string()))?;
                return Ok(key.verify(text, &sig).is_ok());
            }
            if let Ok(key) = p521::PublicKey::from_public_key_der(&args.public_key) {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(
                    key.to_encoded_point(false).as_bytes(),
                )
                .map_err(|e| HostCryptoError::CallFailed(e.to_string()))?;
                let sig = p521::ecdsa::Signature::from_der(&args.signature)
                    .map_err(|e| HostCryptoError::CallFailed(e.to_string()))?;
                return Ok(key.verify(text, &sig).is_ok());
            }
            Err(HostCryptoError::CallFailed("unsupported key".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::software::RustCryptoHost;
    use super::*;

    struct FixedAnswer(Result<bool, HostCryptoError>);

    impl HostCrypto for FixedAnswer {
        fn verify(&self, _: &HostCheck<'_>) -> Result<bool, HostCryptoError> {
            self.0.clone()
        }
    }

    #[test]
    fn known_answers_pass_on_a_verifying_host() {
        assert_eq!(self_test(&RustCryptoHost), Ok(()));
    }

    #[test]
    fn self_test_rejects_hosts_that_cannot_be_trusted() {
        assert_eq!(
            self_test(&FixedAnswer(Err(HostCryptoError::NotAvailable))),
            Err(SelfTestFailure::Unavailable(HostCryptoError::NotAvailable))
        );
        assert_eq!(
            self_test(&FixedAnswer(Ok(true))),
            Err(SelfTestFailure::AcceptedBadSignature)
        );
        assert_eq!(
            self_test(&FixedAnswer(Ok(false))),
            Err(SelfTestFailure::RejectedGoodSignature)
        );
    }

    #[test]
    fn arguments_use_envoys_field_numbers() {
        let bytes = encode_arguments(&HostCheck {
            hash: HashName::Sha384,
            public_key_der: &[1, 2],
            signature: &[3],
            text: b"t",
        });
        assert_eq!(
            bytes,
            [
                &[0x0a, 6][..],
                b"sha384",
                &[0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 1],
                b"t"
            ]
            .concat()
        );
    }

    /// The direct encoding is the message prost writes, byte for byte, whatever the lengths
    /// (one- and two-byte varints, empty fields).
    #[test]
    fn arguments_are_written_as_prost_writes_them() {
        let bytes = |len: usize, fill: u8| vec![fill; len];
        for hash in [HashName::Sha256, HashName::Sha384, HashName::Sha512] {
            for (key, signature, text) in [
                (294, 256, 210),
                (91, 72, 0),
                (0, 0, 0),
                (127, 128, 16_384),
                (1, 300, 70_000),
            ] {
                let (key, signature, text) = (bytes(key, 1), bytes(signature, 2), bytes(text, 3));
                let check = HostCheck {
                    hash,
                    public_key_der: &key,
                    signature: &signature,
                    text: &text,
                };
                let message = VerifySignatureArguments {
                    hash_function: hash.as_str().to_owned(),
                    public_key: key.clone(),
                    signature: signature.clone(),
                    text: text.clone(),
                };
                let encoded = encode_arguments(&check);
                assert_eq!(encoded, message.encode_to_vec());
                assert_eq!(encoded.len(), message.encoded_len());
            }
        }
    }

    #[test]
    fn results_are_decoded() {
        let encode = |result: bool, error: &str| {
            VerifySignatureResult {
                result,
                error: error.to_owned(),
            }
            .encode_to_vec()
        };
        assert_eq!(decode_result(&encode(true, "")), Ok(true));
        assert_eq!(decode_result(&encode(false, "")), Ok(false));
        assert_eq!(
            decode_result(&encode(false, "Failed to verify digest. Error code: 0")),
            Ok(false)
        );
        assert_eq!(
            decode_result(&encode(false, "Failed to initialize digest verify.")),
            Err(HostCryptoError::CallFailed(
                "Failed to initialize digest verify.".into()
            ))
        );
        assert_eq!(
            decode_result(&[0xff, 0xff]),
            Err(HostCryptoError::BadResult)
        );
        // The shortcuts are the answers prost gives for those bytes, and other spellings of
        // them still decode in full.
        assert_eq!(encode(true, ""), [0x08, 0x01]);
        assert!(encode(false, "").is_empty());
        assert_eq!(decode_result(&[0x08, 0x00]), Ok(false));
        assert_eq!(decode_result(&[0x08, 0x00, 0x08, 0x01]), Ok(true));
        assert_eq!(decode_result(&[0x08, 0x01, 0x08, 0x00]), Ok(false));
        assert_eq!(decode_result(&[0x08]), Err(HostCryptoError::BadResult));
        // Envoy's answer to a signature that did not verify, and its near misses, against
        // prost's reading of the same bytes.
        let failed = encode(false, "Failed to verify digest. Error code: 0");
        assert_eq!(failed[..2], [0x12, 38]);
        let mut not_utf8 = failed.clone();
        not_utf8.push(0xff);
        not_utf8[1] += 1;
        let mut short = failed.clone();
        short.pop();
        let cases = [
            failed.clone(),
            encode(false, "Failed to initialize digest verify."),
            encode(false, &"x".repeat(127)),
            encode(false, &format!("{}Failed to verify", "x".repeat(120))),
            not_utf8,
            short,
            [&failed[..], &[0x08, 0x01]].concat(),
        ];
        let by_prost = |bytes: &[u8]| match VerifySignatureResult::decode(bytes) {
            Err(_) => Err(HostCryptoError::BadResult),
            Ok(r) if r.result => Ok(true),
            Ok(r) if r.error.is_empty() || r.error.contains("Failed to verify") => Ok(false),
            Ok(r) => Err(HostCryptoError::CallFailed(r.error)),
        };
        for case in cases {
            assert_eq!(decode_result(&case), by_prost(&case), "{case:?}");
        }
        assert_eq!(decode_result(&failed), Ok(false));
    }
}
