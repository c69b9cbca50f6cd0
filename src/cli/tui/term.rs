//! Taking over the terminal and always giving it back: raw mode and the alternate screen while
//! the TUI runs, restored when [`Screen`] drops, when the TUI's thread panics (a panic hook that
//! restores, then calls the previous hook) and on SIGTERM, SIGHUP, SIGINT or SIGQUIT (a handler
//! that only records the signal; the event loop sees it within one poll and quits normally).

use std::io::{self, Stdout};
use std::panic::{self, PanicHookInfo};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::{self, ThreadId};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The signals that end the TUI.
const SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

/// The last signal received (0: none). Written by the handler, read by the event loop.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // An atomic store is async-signal-safe; everything else happens in the event loop.
    CAUGHT.store(sig, Ordering::SeqCst);
}

/// The terminal, in raw mode on the alternate screen, until dropped.
pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Arc<Hook>,
    previous_handlers: Vec<(libc::c_int, libc::sighandler_t)>,
}

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        let previous_hook: Arc<Hook> = Arc::new(panic::take_hook());
        let hook = Arc::clone(&previous_hook);
        let owner: ThreadId = thread::current().id();
        panic::set_hook(Box::new(move |info| {
            // A panic on another thread leaves the screen to the TUI, which keeps running.
            if thread::current().id() == owner {
                restore();
            }
            hook(info);
        }));
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        let previous_handlers = SIGNALS
            .iter()
            // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
            .map(|&sig| (sig, unsafe { libc::signal(sig, handler) }))
            .collect();
        watchdog();
        // From here on, dropping the screen undoes whatever part of the setup succeeded.
        let mut screen = Screen { terminal, previous_hook, previous_handlers };
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        screen.terminal.clear()?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        for &(sig, prev) in &self.previous_handlers {
            // SAFETY: puts back the disposition `signal` returned when the screen was entered.
            unsafe {
                libc::signal(sig, prev);
            }
        }
        // Setting a hook while panicking would abort; the process is on its way out then anyway.
        if !thread::panicking() {
            let _ours = panic::take_hook();
            let previous = Arc::clone(&self.previous_hook);
            panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor; harmless when already done.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

/// How long the event loop has to act on a signal before the watchdog ends the process.
const GRACE: Duration = Duration::from_millis(150);

/// Ends the process if the event loop did not act on a signal within [`GRACE`]: a read from a
/// terminal that is gone can keep the loop inside the terminal library, and a hung-up TUI must
/// neither spin nor outlive its terminal.
fn watchdog() {
    let spawned = thread::Builder::new().name("tui-watchdog".into()).stack_size(32 * 1024).spawn(|| {
        loop {
            thread::sleep(Duration::from_millis(25));
            if let Some(sig) = caught() {
                thread::sleep(GRACE);
                // Still here: the event loop is stuck. Put back what can be put back, and go.
                if sig != libc::SIGHUP {
                    restore();
                }
                die_of(sig);
            }
        }
    });
    // Without it a signal is still seen by the event loop, only without the guarantee.
    drop(spawned);
}

/// Waits up to `timeout` for input on the terminal (fd 0); true when the terminal is gone
/// (hung up, or in error), so the loop can leave before the terminal library reads from it.
pub fn terminal_gone(timeout: Duration) -> bool {
    let mut fds = [libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 }];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    n > 0 && fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// The signal that asked the TUI to end, if one came.
pub fn caught() -> Option<libc::c_int> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Ends the process the way `sig` would have, once the terminal is restored, so the shell sees
/// "terminated by SIGTERM" rather than a normal exit.
pub fn die_of(sig: libc::c_int) {
    // SAFETY: resetting a disposition and raising a signal have no memory-safety preconditions.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}
