use super::*;
use clap::CommandFactory;

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn aliases_and_flags_parse_like_mir() {
    let cli = Cli::try_parse_from([
        "mir",
        "dev",
        "cmd",
        "send",
        "weather/default",
        "-n",
        "x.Y",
        "-p",
        "{}",
        "--dry-run",
    ])
    .expect("parses");
    let Command::Device(DeviceArgs {
        command: DeviceCommand::Command(c),
    }) = cli.command
    else {
        panic!("not device command")
    };
    let CommandCommand::Send(s) = c.command else {
        panic!("not send")
    };
    assert_eq!(s.send.targets.targets, ["weather/default"]);
    assert_eq!(s.send.name.as_deref(), Some("x.Y"));
    assert!(s.send.dry_run);

    let cli = Cli::try_parse_from(["mir", "ctx", "prod"]).expect("parses");
    assert!(matches!(
        cli.command,
        Command::Context(ContextArgs {
            name: Some(_),
            command: None
        })
    ));
    let cli = Cli::try_parse_from(["mir", "ctx", "add", "p", "--api", "http://x"]).expect("ok");
    assert!(matches!(
        cli.command,
        Command::Context(ContextArgs {
            command: Some(ContextCommand::Add { .. }),
            ..
        })
    ));
    let cli = Cli::try_parse_from(["mir", "evt", "list", "-o", "json"]).expect("parses");
    assert!(matches!(cli.command, Command::Event(_)));
    let e = Cli::try_parse_from(["mir", "dev", "ls", "-o", "xml"]).expect_err("xml");
    assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    let cli =
        Cli::try_parse_from(["mir", "device", "ls", "--ids", "a,b", "-l", "k=v"]).expect("parses");
    let Command::Device(DeviceArgs {
        command: DeviceCommand::Ls(ls),
    }) = cli.command
    else {
        panic!("not ls")
    };
    assert_eq!(ls.targets.ids, ["a", "b"]);
}
