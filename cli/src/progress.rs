//! Progress for long work, on a terminal only (indicatif): a bar when the amount of
//! work is known (`mir swarm` deploying), a spinner while waiting on one call (a send to
//! several devices). When stderr is not a terminal nothing of it is printed.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn: stderr is a terminal.
pub fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar of `total` steps, labelled `what` ("deployed"); hidden unless `visible`.
pub fn bar(total: u64, what: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!("[{{bar:30}}] {{pos}}/{{len}} {what}{{msg}}, {{elapsed_precise}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("#>."));
    }
    pb
}

/// A spinner saying `message` while a call runs; hidden unless `visible`.
pub fn spinner(message: String, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(message);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_nothing_is_drawn() {
        let b = bar(10, "deployed", false);
        b.inc(3);
        assert!(b.is_hidden());
        assert_eq!(b.position(), 3, "a hidden bar still counts");
        assert!(spinner("waiting".into(), false).is_hidden());
    }

    #[test]
    fn the_bar_counts_what_is_done() {
        let b = bar(10, "deployed", true);
        b.inc(4);
        assert_eq!((b.position(), b.length()), (4, Some(10)));
        b.finish_and_clear();
    }
}
