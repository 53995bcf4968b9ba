//! Mail to the administrator (docs/failoverd.md, "Mail"): the mail worker started from the
//! settings, given new settings on SIGHUP, and given a few seconds at exit for what is still
//! on its way. A notice is always logged; it is mailed when mail is configured.

use std::time::Duration;

use ipfailover::settings::Settings;
use ipfailover_os::mail::{self, MailStats, Mailer};

use crate::StartError;

/// At exit, how long pending mail may take.
pub const MAIL_GRACE: Duration = Duration::from_secs(5);

/// The mail worker, when `FAILOVER_EMAIL_RECIPIENT` is set.
#[derive(Debug)]
pub struct Mail {
    mailer: Option<Mailer>,
    hostname: String,
}

impl Mail {
    pub(crate) fn new(hostname: String) -> Mail {
        Mail {
            mailer: None,
            hostname,
        }
    }

    /// Starts the worker from `settings`, as `-t` checks them: what it accepts, the daemon
    /// starts with. A mistake in them is a configuration error.
    pub fn start(&mut self, settings: &Settings) -> Result<(), StartError> {
        match mail::settings_for(settings, &self.hostname).map_err(|e| {
            StartError::config(format!(
                "{}: mail (FAILOVER_EMAIL_*): {e}",
                settings.source.display()
            ))
        })? {
            Some((ms, warning)) => {
                if let Some(w) = warning {
                    log::warn!("{w}");
                }
                let m = Mailer::start(ms)
                    .map_err(|e| StartError::config(format!("mail (FAILOVER_EMAIL_*): {e}")))?;
                self.mailer = Some(m);
            }
            None => self.mailer = None,
        }
        Ok(())
    }

    /// SIGHUP: new mail settings take effect at once, and removing the recipients stops mail.
    /// Settings that are wrong are logged and the old ones kept, as for any invalid
    /// configuration: a typo must not silence the notices of the next takeover.
    pub fn reload(&mut self, settings: &Settings) {
        let wanted = match mail::settings_for(settings, &self.hostname) {
            Ok(Some((ms, warning))) => {
                if let Some(w) = warning {
                    log::warn!("SIGHUP: {w}");
                }
                Some(ms)
            }
            Ok(None) => None,
            Err(e) => {
                log::error!(
                    "SIGHUP: mail (FAILOVER_EMAIL_*): {e}; {}",
                    if self.mailer.is_some() {
                        "the old mail settings are kept"
                    } else {
                        "no mail is sent"
                    }
                );
                return;
            }
        };
        match (wanted, &self.mailer) {
            (Some(ms), Some(m)) => m.reconfigure(ms),
            (Some(ms), None) => match Mailer::start(ms) {
                Ok(m) => self.mailer = Some(m),
                Err(e) => log::error!("SIGHUP: mail settings: {e}; no mail is sent"),
            },
            (None, Some(_)) => {
                if let Some(m) = self.mailer.take() {
                    // Off the loop: what is still on its way gets its grace, the loop none.
                    let spawned = std::thread::Builder::new()
                        .name("mail-stop".to_owned())
                        .spawn(move || m.shutdown(MAIL_GRACE));
                    if let Err(e) = spawned {
                        log::warn!("mail: cannot wait for the old mail worker: {e}");
                    }
                }
            }
            (None, None) => {}
        }
    }

    /// Whether notices are mailed.
    pub fn active(&self) -> bool {
        self.mailer.is_some()
    }

    /// Tells the administrator: logged always, mailed when mail is configured, at most the
    /// least gap between two messages after the last one.
    pub fn send(&self, subject: String, body: String) {
        log::info!("notice: {subject}");
        log::debug!("notice body:\n{body}");
        if let Some(m) = &self.mailer {
            m.send(mail::Notice { subject, body });
        }
    }

    /// [`Mail::send`] for a notice that can wait: while notices keep coming (a flapping
    /// link), such notices go in digests that come further and further apart (up to
    /// [`mail::MAX_GAP`]); the others never wait longer than the least gap.
    pub fn send_routine(&self, subject: String, body: String) {
        log::info!("notice: {subject}");
        log::debug!("notice body:\n{body}");
        if let Some(m) = &self.mailer {
            m.send_routine(mail::Notice { subject, body });
        }
    }

    /// The worker's counters, when mail is configured.
    pub fn stats(&self) -> Option<MailStats> {
        self.mailer.as_ref().map(Mailer::stats)
    }

    /// At exit: the notices still on their way get [`MAIL_GRACE`].
    pub(crate) fn shutdown(&mut self) {
        if let Some(m) = self.mailer.take() {
            m.shutdown(MAIL_GRACE);
        }
    }
}
