//! The verifiers the targets run, built once with the test secrets. The only code that knows the
//! providers' constructors: when they change, this file changes.

use std::sync::OnceLock;

use payhook::providers::{pinddpay, pingpong, pingpp, wechat_alarm};
use payhook::secret::SecretString;

use super::{PINDDPAY_SECRET, PINGPONG_SALT, WECHAT_APP, WECHAT_KEY};

pub fn pingpp_keys() -> &'static (rsa::pkcs1v15::SigningKey<sha2::Sha256>, pingpp::Pingpp) {
    static K: OnceLock<(rsa::pkcs1v15::SigningKey<sha2::Sha256>, pingpp::Pingpp)> = OnceLock::new();
    K.get_or_init(|| {
        use rand::SeedableRng;
        // 1024 bits, the smallest key the verifier accepts: small enough to sign every input
        // (a fraction of a millisecond); the code path is the same as with Ping++'s 2048 bits.
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let private = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("RSA key");
        let verifier = pingpp::Pingpp::from_keys(vec![private.to_public_key()])
            .expect("a 1024-bit key is accepted");
        (rsa::pkcs1v15::SigningKey::new(private), verifier)
    })
}

pub fn pinddpay_verifier(scheme: pinddpay::SignScheme) -> &'static pinddpay::Pinddpay {
    static BODY: OnceLock<pinddpay::Pinddpay> = OnceLock::new();
    static ONLY: OnceLock<pinddpay::Pinddpay> = OnceLock::new();
    let cell = match scheme {
        pinddpay::SignScheme::SecretOnly => &ONLY,
        _ => &BODY,
    };
    cell.get_or_init(|| {
        pinddpay::Pinddpay::new(vec![SecretString::new(PINDDPAY_SECRET)], scheme, None)
    })
}

pub fn pingpong_verifier() -> &'static pingpong::Pingpong {
    static V: OnceLock<pingpong::Pingpong> = OnceLock::new();
    V.get_or_init(|| {
        pingpong::Pingpong::new(
            vec![SecretString::new(PINGPONG_SALT)],
            None,
            pingpong::DisputeSignScope::All,
        )
    })
}

pub fn wechat_verifier() -> &'static wechat_alarm::WechatAlarm {
    static V: OnceLock<wechat_alarm::WechatAlarm> = OnceLock::new();
    V.get_or_init(|| {
        wechat_alarm::WechatAlarm::new(WECHAT_APP.into(), vec![SecretString::new(WECHAT_KEY)], None)
    })
}
