//! Tests of the layering of flags, environment, file and defaults, and of
//! the checks on the settings in force.

use clap::Parser as _;

use super::*;

#[test]
fn defaults_match_the_contract() {
    let c = Config::from_settings(Settings::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.spill_threshold, 102_400);
    assert_eq!(c.max_element_size, 1_073_741_824);
    assert_eq!((c.default_lifetime, c.max_lifetime), (3600, 86400));
    assert_eq!(c.max_timeout, Duration::from_secs(300));
    assert_eq!(c.max_deliveries, 10);
}

#[test]
fn flags_win_over_the_file() {
    let file: Settings =
        toml::from_str("spill_threshold = 10\nmax_lifetime = 20\nlisten = \"127.0.0.1:9\"")
            .unwrap();
    let cli = Cli::try_parse_from(["blobq", "serve", "--spill-threshold", "5"]).unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    let c = Config::from_settings(args.settings.or(file)).unwrap();
    assert_eq!(c.spill_threshold, 5);
    assert_eq!(c.max_lifetime, 20);
    assert_eq!(
        c.default_lifetime, 20,
        "an unset default follows a lowered maximum"
    );
    assert_eq!(c.listen.port(), 9);
}

#[test]
fn the_shipped_example_file_parses_to_the_defaults() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/blobq.toml")).unwrap();
    let file: Settings = toml::from_str(&text).unwrap();
    let c = Config::from_settings(file).unwrap();
    let d = Config::from_settings(Settings::default()).unwrap();
    assert_eq!(format!("{c:?}"), format!("{d:?}"));
}

#[test]
fn namespace_quotas_come_from_tables_of_the_file() {
    let text =
        "namespace_max_elements = 100\n[namespaces.big]\nmax_elements = 5000\nmax_bytes = 9\n";
    let c = Config::from_settings(toml::from_str(text).unwrap()).unwrap();
    assert_eq!(
        c.namespace_quota,
        Quota {
            max_elements: 100,
            max_bytes: 0
        }
    );
    assert_eq!(
        c.namespace_quotas["big"],
        Quota {
            max_elements: 5000,
            max_bytes: 9
        }
    );
    let bad: Settings = toml::from_str("[namespaces.\"a b\"]\nmax_elements = 1\n").unwrap();
    assert!(Config::from_settings(bad).is_err());
    assert!(toml::from_str::<Settings>("[namespaces.x]\nmax_element = 1\n").is_err());
}

#[test]
fn the_auth_table_layers_like_every_setting_and_turns_authentication_on() {
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "[auth]\njwt_issuer = \"file\"\nmetrics_open = true\n\
         [[auth.tokens]]\nname = \"t\"\nsha256 = \"{digest}\"\n\
         namespaces = [\"media-*\"]\nroles = [\"admin\"]\n"
    );
    let file: Settings = toml::from_str(&text).unwrap();
    let cli = Cli::try_parse_from(["blobq", "serve", "--auth-jwt-issuer", "flag"]).unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    let c = Config::from_settings(args.settings.or(file)).unwrap();
    assert!(c.auth.is_enabled());
    let shown = format!("{c:?}");
    assert!(
        shown.contains("\"flag\"") && !shown.contains("\"file\""),
        "{shown}"
    );
    assert!(shown.contains("metrics_open: true"), "{shown}");
    assert!(!shown.contains(digest), "the digest is never shown");
    assert!(!Config::from_settings(Settings::default())
        .unwrap()
        .auth
        .is_enabled());
    assert!(toml::from_str::<Settings>("[auth]\ntoken = []\n").is_err());
    let bad: Settings = toml::from_str(&text.replace("admin", "root")).unwrap();
    assert!(Config::from_settings(bad).is_err());
}

#[test]
fn unknown_keys_and_contradictions_are_refused() {
    assert!(toml::from_str::<Settings>("spil_threshold = 1").is_err());
    let s = Settings {
        default_lifetime: Some(100),
        max_lifetime: Some(10),
        ..Settings::default()
    };
    assert!(Config::from_settings(s).is_err());
}
