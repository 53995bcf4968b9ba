//! Split brain, healed: cut every path between the primary and the secondary while the client
//! still reaches both, then heal. Both must converge to the primary holding the address, the
//! client must end up at the primary's MAC (the returning owner re-announces), and the
//! administrator is told.

use std::time::Duration;

use ipfailover_e2e::{wait_for, Host, Lab, VIP};

#[test]
fn a_partition_heals_to_the_primary_holding_the_address() {
    let mut lab = Lab::new("partition");
    lab.start_smtp(Host::Sec, 2525);
    let mail = [
        ("FAILOVER_EMAIL_RECIPIENT", "ops@example.org"),
        ("FAILOVER_EMAIL_TRANSPORT", "smtp://127.0.0.1:2525"),
    ];
    let (_hb, fo) = lab.start_pair(&[], &mail);
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));

    // The partition: the secondary hears nothing and takes over; the primary keeps its
    // address. Two hosts answer for it; the client follows the last announcement.
    lab.partition(true);
    assert!(
        wait_for(Duration::from_secs(5), || lab.holds(Host::Sec, "eth0", VIP)).is_some(),
        "no takeover during the partition:\n{}",
        lab.logs()
    );
    assert!(lab.holds(Host::Pri, "eth0", VIP));
    lab.client_reaches(VIP, Host::Sec, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));

    // Healed: the secondary hears the primary on the private link (it cannot hear it on the
    // public one while it holds the primary's address), releases, tells the primary, and the
    // primary announces itself: the client goes back to it.
    lab.partition(false);
    let healed = wait_for(Duration::from_secs(10), || {
        !lab.holds(Host::Sec, "eth0", VIP)
    })
    .unwrap_or_else(|| {
        panic!(
            "the secondary kept the address after the heal:\n{}",
            lab.logs()
        )
    });
    assert!(
        healed < Duration::from_secs(3),
        "converged after {healed:?}"
    );
    lab.client_reaches(VIP, Host::Pri, Duration::from_secs(5));
    assert!(lab.holds(Host::Pri, "eth0", VIP));
    let log = lab.proc(fo).log_text();
    assert!(
        log.contains("(peer-returned)") && log.contains("told the primary"),
        "{log}"
    );

    // Both events were mailed (a takeover, then a release; possibly as one digest).
    let ok = wait_for(Duration::from_secs(20), || {
        let all: String = lab.mails().concat();
        all.contains("took over 198.51.100.10") && all.contains("released 198.51.100.10")
    });
    assert!(ok.is_some(), "mails: {:?}", lab.mails().len());
}
