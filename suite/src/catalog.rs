//! The catalog: every case, by family. This list is the single source for the runner, `xtask list`,
//! the README table and the rstest parametrization of `suite/tests/conform.rs`, so a case's name is
//! always its function's name and none can be forgotten by one of them.

use crate::script::Case;

/// Calls the macro `$m` with the catalog's structure `family: [case, ...], ...`.
#[macro_export]
macro_rules! with_catalog {
    ($m:ident) => {
        $m! {
            close: [orderly_idle, with_unread_data, data_after_peer_closed,
                shutdown_wakes_blocked_accept, after_peer_reset_returns, rst_after_queued_data],
            linger: [zero_abortive_close, positive_peer_not_reading, positive_nonblocking,
                set_after_peer_closed],
            shutdown: [write_half_close, read_then_peer_sends, write_after_own_shutdown, both_after_peer_fin],
            process_exit: [
                killed_idle, killed_with_unread_data, exit_with_open_socket, sigterm_default_action,
                abort, inherited_socket_parent_killed,
            ],
            after_close: [
                killed_write_read_write, read_twice_after_reset, write_after_reset_sigpipe_default,
                write_after_reset_sigpipe_suppressed, reader_blocked_when_fin_arrives,
                reader_blocked_when_rst_arrives,
            ],
            connect: [closed_port, backlog_full_not_accepting, reset_before_accept, listener_closed_with_connection_queued,
                listener_killed_with_connection_queued, nonblocking_refused, nonblocking_second_call,
                again_after_refused, self_connect, to_unspecified_address],
            listen: [unbound_socket],
            bind: [getsockname_unbound, family_mismatch, reuseaddr_over_listener, reuseport_two_listeners,
                v4mapped_wildcard],
            ipv6: [orderly_idle, killed_with_unread_data, closed_port, dual_stack_default, dual_stack_v6only],
            timeouts: [read_timeout_idle, write_timeout_peer_not_reading],
            time_wait: [rebind_without_reuseaddr, rebind_with_reuseaddr],
            readiness: [poll_on_peer_fin, poll_on_peer_rst, poll_after_own_shutdown_read,
                poll_unconnected_socket, urgent_data, poll_after_own_shutdown_write],
            limits: [accept_out_of_fds],
            host_shutdown: [server_closes_on_sigterm, server_ignores_sigterm],
            ports: [ephemeral_exhaustion, capacity_10k_idle, capacity_fd_limit],
            host_crash: [
                sending_user_timeout, sending_retries2_shortened, sending_platform_default,
                idle_no_keepalive, idle_keepalive, idle_app_heartbeat, blocked_reader_with_read_timeout,
                connect_syn_retries,
            ],
            host_reboot: [client_sends, idle_keepalive_meets_rst],
            partition: [healed_before_user_timeout, healed_after_user_timeout],
            unreachable: [while_sending, during_connect],
            middlebox: [reset_established],
            unix: [
                socket_types, path_length_limit, abstract_namespace, peer_credentials, reuseport,
                dgram_receiver_full, listener_closed_after_connect,
            ],
            accept: [inherits_nonblocking, inherits_options],
            options: [buffer_size_doubling, accept_conn, boolean_value],
            udp: [
                icmp_unreachable_unconnected, icmp_unreachable_connected, recverr_next_send,
                truncated_datagram, zero_length_datagram, zero_length_buffer, sendto_on_connected,
                disconnect, broadcast_without_option, reuseaddr_unicast, v6only_default,
                send_flood_nonblocking,
            ],
        }
    };
}

macro_rules! make_all {
    ($($family:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        /// Every case, in catalog order, with its family and name filled in from the catalog.
        pub fn all() -> Vec<Case> {
            let mut out = Vec::new();
            $($(
                let mut c = crate::cases::$family::$case();
                c.family = stringify!($family);
                c.name = stringify!($case);
                out.push(c);
            )*)*
            out
        }
    };
}

with_catalog!(make_all);

/// The case with this id ("family/name").
pub fn find(id: &str) -> Option<Case> {
    all().into_iter().find(|c| c.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_intents_say_what_they_verify() {
        let all = all();
        assert!(all.len() >= 28, "the catalog has {} cases", all.len());
        let ids: HashSet<_> = all.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), all.len());
        for c in &all {
            assert!(
                c.intent.starts_with("Verify"),
                "{}: intent must start with Verify",
                c.id()
            );
            assert!(
                !c.intent.contains('\n'),
                "{}: intent must be one line",
                c.id()
            );
            assert!(!c.steps.is_empty(), "{}", c.id());
        }
    }

    #[test]
    fn every_started_action_is_finished() {
        use crate::script::{Op, Step};
        for c in all() {
            let mut open = HashSet::new();
            // A call started on a second thread leaves its agent free for other requests.
            let mut threaded = HashSet::new();
            for s in &c.steps {
                match s {
                    Step::Start(a) => {
                        assert!(
                            open.insert(a.side),
                            "{}: {:?} started twice",
                            c.id(),
                            a.side
                        );
                        if matches!(a.op, Op::InThread { .. }) {
                            threaded.insert(a.side);
                        }
                    }
                    Step::Finish(side) => {
                        assert!(
                            open.remove(side),
                            "{}: {side} finished without start",
                            c.id()
                        );
                        threaded.remove(side);
                    }
                    Step::Do(a) => {
                        assert!(
                            !matches!(a.op, Op::InThread { .. }),
                            "{}: a second thread's call is started, not done",
                            c.id()
                        );
                        assert!(
                            !open.contains(&a.side) || threaded.contains(&a.side),
                            "{}: {} is busy",
                            c.id(),
                            a.side
                        )
                    }
                    _ => {}
                }
            }
            // A started call may stay unfinished only where the peer host vanished under it (a
            // crashed server's echo loop); the runner ends it at cleanup.
            let faulted = c.steps.iter().any(|s| matches!(s, Step::Fault(_)));
            assert!(
                open.is_empty() || faulted,
                "{}: unfinished {open:?}",
                c.id()
            );
        }
    }

    #[test]
    fn ipv6_and_wildcard_listeners_declare_what_they_need() {
        use crate::script::{Need, Op, Step, Topology};
        for c in all() {
            assert!(
                !c.ipv6 || c.needs.contains(&Need::Ipv6),
                "{}: an IPv6 case needs ipv6",
                c.id()
            );
            assert!(!c.ipv6 || c.topology == Topology::Loopback, "{}", c.id());
            // A listener on [::] outside the case's own namespace would listen on the host.
            let wildcard = c
                .steps
                .iter()
                .any(|s| matches!(s, Step::Do(a) if matches!(a.op, Op::ListenDualStack { .. })));
            // So would listen() on a socket it binds itself (never bound, or its bind refused),
            // and a bind to the IPv4-mapped wildcard.
            let binds_wildcard = c.steps.iter().any(|s| {
                use crate::script::BindTo;
                matches!(s, Step::Do(a) if matches!(a.op, Op::ListenOn { .. }
                    | Op::Bind { to: BindTo::V4MappedWildcard }))
            });
            assert!(
                !binds_wildcard || c.needs.contains(&Need::Isolation),
                "{}: a listen() that may bind the wildcard needs isolation",
                c.id()
            );
            assert!(
                !wildcard
                    || [Need::Isolation, Need::Ipv6]
                        .iter()
                        .all(|n| c.needs.contains(n)),
                "{}: a [::] listener needs ipv6 and isolation",
                c.id()
            );
        }
    }
}
