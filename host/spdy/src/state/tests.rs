//! The state machine alone: events in, actions out, no transport and no tasks.
//!
//! `CASES` is the table: a session in a given role and configuration, the events that bring it
//! to the situation (their actions are not checked), one event, and exactly the actions it must
//! produce. The tests after it follow longer sequences (windows, half-closes, ending).

use bytes::Bytes;

use super::{Action, Reply, Role, State};
use crate::config::Config;
use crate::error::{SessionError, StreamError};
use crate::frame::{
    DEFAULT_WINDOW, Frame, GoAwayStatus, Headers, MAX_WINDOW, RstStatus, Setting, StreamId,
    SynStream, setting_id,
};

// --- events ----------------------------------------------------------------------------------

/// One input to the machine.
#[derive(Debug, Clone)]
enum Ev {
    /// A frame from the peer.
    Recv(Frame),
    /// `Session::open_stream` (must succeed).
    Open { fin: bool },
    /// `IncomingStream::accept`.
    Accept(StreamId),
    /// `IncomingStream::reject`.
    Refuse(StreamId, RstStatus),
    /// `SpdyStream::reset`.
    Reset(StreamId, RstStatus),
    /// A write of this many bytes; the windows must allow all of it.
    Write(StreamId, usize),
    /// `SpdyStream::finish`.
    Fin(StreamId),
    /// The application read this many bytes.
    Consumed(StreamId, usize),
    /// The stream handle was dropped.
    Dropped(StreamId),
    /// `Session::go_away`.
    GoAway,
    /// The `Incoming` handle was dropped.
    IncomingDropped,
    /// `Session::ping`.
    Ping,
}

fn apply(s: &mut State, ev: Ev) -> Vec<Action> {
    let mut out = Vec::new();
    match ev {
        Ev::Recv(f) => s.on_frame(f, &mut out),
        Ev::Open { fin } => {
            s.open(Headers::new(), fin, &mut out).expect("open");
        }
        Ev::Accept(id) => {
            assert_eq!(s.take_incoming().map(|syn| syn.stream_id), Some(id));
            s.accept(id, Headers::new(), false, &mut out);
        }
        Ev::Refuse(id, status) => {
            assert_eq!(s.take_incoming().map(|syn| syn.stream_id), Some(id));
            s.refuse(id, status, &mut out);
        }
        Ev::Reset(id, status) => s.reset(id, status, &mut out),
        Ev::Write(id, n) => {
            assert_eq!(s.write_capacity(id, n, usize::MAX), Ok(n), "window for {n}");
            s.send_data(id, Bytes::from(vec![0u8; n]), &mut out);
        }
        Ev::Fin(id) => s.send_fin(id, &mut out),
        Ev::Consumed(id, n) => s.consumed(id, n, &mut out),
        Ev::Dropped(id) => s.handle_dropped(id, &mut out),
        Ev::GoAway => {
            s.send_goaway(GoAwayStatus::Ok, &mut out);
            s.maybe_finish_session(&mut out);
        }
        Ev::IncomingDropped => s.incoming_dropped(&mut out),
        Ev::Ping => {
            s.ping(&mut out).expect("ping");
        }
    }
    out
}

fn machine(role: Role, config: Config) -> State {
    State::new(&config.normalized(), role, &mut Vec::new())
}

fn run(role: Role, config: Config, events: &[Ev]) -> State {
    let mut s = machine(role, config);
    for ev in events {
        apply(&mut s, ev.clone());
    }
    s
}

// --- frames ----------------------------------------------------------------------------------

/// A SPDY/3.1 peer's first frame: it does flow control.
fn hello() -> Ev {
    Ev::Recv(Frame::Settings {
        clear: false,
        entries: Vec::new(),
    })
}

fn syn(id: StreamId, fin: bool) -> Frame {
    Frame::SynStream(SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin,
        unidirectional: false,
        headers: Headers::new().with("streamtype", "stdin"),
    })
}

fn reply(id: StreamId, fin: bool) -> Frame {
    Frame::SynReply {
        stream_id: id,
        fin,
        headers: Headers::new().with("x", "y"),
    }
}

fn rst(id: StreamId, status: RstStatus) -> Frame {
    Frame::RstStream {
        stream_id: id,
        status,
    }
}

fn data(id: StreamId, len: usize, fin: bool) -> Frame {
    Frame::Data {
        stream_id: id,
        fin,
        data: Bytes::from(vec![b'x'; len]),
    }
}

fn window_update(id: StreamId, delta: u32) -> Frame {
    Frame::WindowUpdate {
        stream_id: id,
        delta,
    }
}

fn goaway(last: StreamId, status: GoAwayStatus) -> Frame {
    Frame::GoAway {
        last_good_stream_id: last,
        status,
    }
}

fn initial_window(value: u32) -> Frame {
    Frame::Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: setting_id::INITIAL_WINDOW_SIZE,
            value,
        }],
    }
}

// --- expected actions ------------------------------------------------------------------------

fn send_rst(id: StreamId, status: RstStatus) -> Action {
    Action::Send(rst(id, status))
}

/// What resetting a stream from this side does while the application still holds it.
fn local_reset(id: StreamId, status: RstStatus) -> Vec<Action> {
    vec![
        Action::StreamReset(id),
        Action::CancelQueued(id),
        send_rst(id, status),
    ]
}

/// [`local_reset`] of a stream nobody holds: it is forgotten at once.
fn refused(id: StreamId, status: RstStatus) -> Vec<Action> {
    let mut v = local_reset(id, status);
    v.push(Action::Forget(id));
    v
}

/// GOAWAY PROTOCOL_ERROR and the end of the session (no peer streams pending).
fn protocol_error(last_good: StreamId) -> Vec<Action> {
    vec![
        Action::Send(goaway(last_good, GoAwayStatus::ProtocolError)),
        Action::IncomingChanged,
        Action::Closed {
            discard_queued: false,
        },
    ]
}

fn deliver(id: StreamId, len: usize) -> Action {
    Action::Deliver(id, Bytes::from(vec![b'x'; len]))
}

// --- the table -------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    role: Role,
    config: Config,
    given: Vec<Ev>,
    when: Ev,
    then: Vec<Action>,
}

fn strict() -> Config {
    Config::strict()
}

fn adaptive() -> Config {
    Config::default()
}

/// A server with peer stream 1 accepted (a flow-controlled peer, strict mode).
fn server_with_stream_1() -> Vec<Ev> {
    vec![hello(), Ev::Recv(syn(1, false)), Ev::Accept(1)]
}

fn cases() -> Vec<Case> {
    use Role::{Client, Server};
    vec![
        // SYN_STREAM and stream ids
        Case {
            name: "the peer's first frame tells writers whether windows apply",
            role: Server,
            config: adaptive(),
            given: vec![],
            when: Ev::Recv(syn(1, false)),
            then: vec![Action::WindowsChanged, Action::IncomingChanged],
        },
        Case {
            name: "SYN_STREAM with an odd id on a server waits for accept",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(syn(1, false)),
            then: vec![Action::IncomingChanged],
        },
        Case {
            name: "SYN_STREAM with our parity is a protocol error",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(syn(2, false)),
            then: protocol_error(0),
        },
        Case {
            name: "SYN_STREAM with an even id to a client opens a stream",
            role: Client,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(syn(2, false)),
            then: vec![Action::IncomingChanged],
        },
        Case {
            name: "SYN_STREAM ids must increase",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(5, false)), Ev::Accept(5)],
            when: Ev::Recv(syn(3, false)),
            then: protocol_error(5),
        },
        Case {
            name: "SYN_STREAM reusing an open stream's id is a protocol error",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(syn(1, false)),
            then: protocol_error(1),
        },
        Case {
            name: "SYN_STREAM reusing a closed stream's id is a protocol error",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Refuse(1, RstStatus::Cancel),
            ],
            when: Ev::Recv(syn(1, false)),
            then: protocol_error(1),
        },
        Case {
            name: "SYN_STREAM beyond max_concurrent_streams is refused",
            role: Server,
            config: Config {
                max_concurrent_streams: 1,
                ..strict()
            },
            given: server_with_stream_1(),
            when: Ev::Recv(syn(3, false)),
            then: refused(3, RstStatus::RefusedStream),
        },
        Case {
            name: "SYN_STREAM after our GOAWAY is refused",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false)), Ev::Accept(1), Ev::GoAway],
            when: Ev::Recv(syn(3, false)),
            then: refused(3, RstStatus::RefusedStream),
        },
        Case {
            name: "SYN_STREAM once the Incoming is dropped is refused",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::IncomingDropped],
            when: Ev::Recv(syn(1, false)),
            then: refused(1, RstStatus::RefusedStream),
        },
        // SYN_REPLY
        Case {
            name: "SYN_REPLY answers our stream",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }],
            when: Ev::Recv(reply(1, false)),
            then: vec![Action::Replied(1)],
        },
        Case {
            name: "SYN_REPLY with FIN half-closes the peer's side",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }],
            when: Ev::Recv(reply(1, true)),
            then: vec![Action::Replied(1), Action::PeerFinished(1)],
        },
        Case {
            name: "a second SYN_REPLY is STREAM_IN_USE",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }, Ev::Recv(reply(1, false))],
            when: Ev::Recv(reply(1, false)),
            then: local_reset(1, RstStatus::StreamInUse),
        },
        Case {
            name: "SYN_REPLY on a peer-opened stream is STREAM_IN_USE",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(reply(1, false)),
            then: local_reset(1, RstStatus::StreamInUse),
        },
        Case {
            name: "SYN_REPLY for a stream never opened is INVALID_STREAM",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }],
            when: Ev::Recv(reply(3, false)),
            then: vec![send_rst(3, RstStatus::InvalidStream)],
        },
        Case {
            name: "SYN_REPLY for a stream we forgot is stale and ignored",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }, Ev::Dropped(1)],
            when: Ev::Recv(reply(1, false)),
            then: vec![],
        },
        // RST_STREAM
        Case {
            name: "RST_STREAM voids unread data and fails the stream",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(data(1, 10, false)),
            ],
            when: Ev::Recv(rst(1, RstStatus::Cancel)),
            then: vec![
                Action::Discard(1),
                Action::StreamReset(1),
                Action::ResumeReading,
            ],
        },
        Case {
            name: "RST_STREAM after the peer's FIN keeps the data readable",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(data(1, 10, true)),
            ],
            when: Ev::Recv(rst(1, RstStatus::Cancel)),
            then: vec![Action::StreamReset(1), Action::ResumeReading],
        },
        Case {
            name: "RST_STREAM for an unknown stream is ignored",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(rst(7, RstStatus::Cancel)),
            then: vec![],
        },
        Case {
            name: "RST_STREAM for a stream we reset behind our FIN and forgot is ignored",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Fin(1),
                Ev::Dropped(1),
            ],
            when: Ev::Recv(rst(1, RstStatus::Cancel)),
            then: vec![],
        },
        // DATA
        Case {
            name: "DATA is delivered to the stream",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(data(1, 3, false)),
            then: vec![deliver(1, 3)],
        },
        Case {
            name: "DATA before accept is delivered too",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false))],
            when: Ev::Recv(data(1, 3, false)),
            then: vec![deliver(1, 3)],
        },
        Case {
            name: "DATA with FIN delivers, then half-closes",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(data(1, 3, true)),
            then: vec![deliver(1, 3), Action::PeerFinished(1)],
        },
        Case {
            name: "an empty DATA frame with FIN only half-closes",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(data(1, 0, true)),
            then: vec![Action::PeerFinished(1)],
        },
        Case {
            name: "DATA after the peer's FIN is STREAM_ALREADY_CLOSED",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, true)), Ev::Accept(1)],
            when: Ev::Recv(data(1, 3, false)),
            then: local_reset(1, RstStatus::StreamAlreadyClosed),
        },
        Case {
            name: "DATA for a stream never opened is INVALID_STREAM",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(data(5, 3, false)),
            then: vec![send_rst(5, RstStatus::InvalidStream)],
        },
        Case {
            name: "DATA in flight after our reset is dropped",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Reset(1, RstStatus::Cancel),
            ],
            when: Ev::Recv(data(1, 3, false)),
            then: vec![],
        },
        Case {
            name: "DATA for a refused and forgotten stream is dropped",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Refuse(1, RstStatus::Cancel),
            ],
            when: Ev::Recv(data(1, 3, false)),
            then: vec![],
        },
        Case {
            name: "DATA past the stream window is FLOW_CONTROL_ERROR (strict)",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(data(1, DEFAULT_WINDOW as usize, false)),
            ],
            when: Ev::Recv(data(1, 1, false)),
            then: local_reset(1, RstStatus::FlowControlError),
        },
        Case {
            name: "DATA past the session window is a protocol error (strict)",
            role: Server,
            config: Config {
                session_window_size: DEFAULT_WINDOW,
                ..strict()
            },
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(syn(3, false)),
                Ev::Accept(3),
                Ev::Recv(data(1, 40_000, false)),
            ],
            when: Ev::Recv(data(3, 30_000, false)),
            then: protocol_error(3),
        },
        Case {
            name: "DATA past the window of a peer without flow control is accepted (adaptive)",
            role: Server,
            config: adaptive(),
            given: vec![
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(data(1, DEFAULT_WINDOW as usize, false)),
            ],
            when: Ev::Recv(data(1, 1000, false)),
            then: vec![deliver(1, 1000)],
        },
        // WINDOW_UPDATE
        Case {
            name: "WINDOW_UPDATE lets writers go on",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(window_update(1, 100)),
            then: vec![Action::WindowsChanged],
        },
        Case {
            name: "WINDOW_UPDATE for an unknown stream is harmless",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(window_update(9, 100)),
            then: vec![Action::WindowsChanged],
        },
        Case {
            name: "a stream window past 2^31-1 is FLOW_CONTROL_ERROR (strict)",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(window_update(1, MAX_WINDOW)),
            then: local_reset(1, RstStatus::FlowControlError),
        },
        Case {
            name: "a session window past 2^31-1 is a protocol error (strict)",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(window_update(0, MAX_WINDOW)),
            then: protocol_error(1),
        },
        Case {
            name: "windows past 2^31-1 are clamped (adaptive)",
            role: Server,
            config: adaptive(),
            given: server_with_stream_1(),
            when: Ev::Recv(window_update(1, MAX_WINDOW)),
            then: vec![Action::WindowsChanged],
        },
        // PING
        Case {
            name: "the peer's PING is echoed",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(Frame::Ping { id: 1 }),
            then: vec![Action::Send(Frame::Ping { id: 1 })],
        },
        Case {
            name: "the echo of our PING answers it",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Ping],
            when: Ev::Recv(Frame::Ping { id: 2 }),
            then: vec![Action::PingAnswered(2)],
        },
        // GOAWAY
        Case {
            name: "GOAWAY refuses our streams after the last good one",
            role: Client,
            config: strict(),
            given: vec![hello(), Ev::Open { fin: false }, Ev::Open { fin: false }],
            when: Ev::Recv(goaway(1, GoAwayStatus::Ok)),
            then: vec![Action::StreamReset(3)],
        },
        Case {
            name: "GOAWAY ends an idle session",
            role: Client,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(goaway(0, GoAwayStatus::InternalError)),
            then: vec![Action::Closed {
                discard_queued: false,
            }],
        },
        // SETTINGS
        Case {
            name: "SETTINGS_INITIAL_WINDOW_SIZE resizes the send windows",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(initial_window(100_000)),
            then: vec![Action::WindowsChanged],
        },
        Case {
            name: "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is a protocol error",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Recv(initial_window(MAX_WINDOW + 1)),
            then: protocol_error(1),
        },
        Case {
            name: "unknown control frames are ignored",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::Recv(Frame::Unknown {
                frame_type: 10,
                flags: 0,
                len: 3,
            }),
            then: vec![],
        },
        // Local events
        Case {
            name: "opening a stream sends SYN_STREAM",
            role: Client,
            config: strict(),
            given: vec![],
            when: Ev::Open { fin: true },
            then: vec![Action::Send(Frame::SynStream(SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: true,
                unidirectional: false,
                headers: Headers::new(),
            }))],
        },
        Case {
            name: "accepting sends SYN_REPLY",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false))],
            when: Ev::Accept(1),
            then: vec![Action::Send(Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: Headers::new(),
            })],
        },
        Case {
            name: "our FIN is an empty DATA frame with FLAG_FIN",
            role: Server,
            config: strict(),
            given: server_with_stream_1(),
            when: Ev::Fin(1),
            then: vec![Action::Send(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new(),
            })],
        },
        Case {
            name: "a second FIN sends nothing",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false)), Ev::Accept(1), Ev::Fin(1)],
            when: Ev::Fin(1),
            then: vec![],
        },
        Case {
            name: "RST after our FIN",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false)), Ev::Accept(1), Ev::Fin(1)],
            when: Ev::Reset(1, RstStatus::InternalError),
            then: local_reset(1, RstStatus::InternalError),
        },
        Case {
            name: "a second reset sends nothing",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Reset(1, RstStatus::Cancel),
            ],
            when: Ev::Reset(1, RstStatus::InternalError),
            then: vec![],
        },
        Case {
            name: "rejecting a peer stream resets and forgets it",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, false))],
            when: Ev::Refuse(1, RstStatus::InternalError),
            then: refused(1, RstStatus::InternalError),
        },
        Case {
            name: "dropping a stream mid-write resets it with CANCEL",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(data(1, 5, false)),
            ],
            when: Ev::Dropped(1),
            then: vec![
                Action::Discard(1),
                Action::ResumeReading,
                Action::StreamReset(1),
                Action::CancelQueued(1),
                send_rst(1, RstStatus::Cancel),
                Action::Forget(1),
            ],
        },
        Case {
            name: "dropping a stream after our FIN resets it behind the queued data",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Write(1, 5),
                Ev::Fin(1),
            ],
            when: Ev::Dropped(1),
            then: vec![
                Action::Discard(1),
                Action::ResumeReading,
                Action::SendBehindData(rst(1, RstStatus::Cancel)),
                Action::Forget(1),
            ],
        },
        Case {
            name: "dropping a stream finished both ways just forgets it",
            role: Server,
            config: strict(),
            given: vec![hello(), Ev::Recv(syn(1, true)), Ev::Accept(1), Ev::Fin(1)],
            when: Ev::Dropped(1),
            then: vec![Action::Discard(1), Action::ResumeReading, Action::Forget(1)],
        },
        Case {
            name: "GOAWAY refuses the peer streams not yet accepted",
            role: Server,
            config: strict(),
            given: vec![
                hello(),
                Ev::Recv(syn(1, false)),
                Ev::Accept(1),
                Ev::Recv(syn(3, false)),
            ],
            when: Ev::GoAway,
            then: [
                vec![Action::Send(goaway(3, GoAwayStatus::Ok))],
                refused(3, RstStatus::RefusedStream),
                vec![Action::IncomingChanged],
            ]
            .concat(),
        },
        Case {
            name: "GOAWAY with nothing open ends the session",
            role: Server,
            config: strict(),
            given: vec![hello()],
            when: Ev::GoAway,
            then: vec![
                Action::Send(goaway(0, GoAwayStatus::Ok)),
                Action::IncomingChanged,
                Action::Closed {
                    discard_queued: false,
                },
            ],
        },
    ]
}

#[test]
fn table() {
    let mut failed = Vec::new();
    for case in cases() {
        let mut s = run(case.role, case.config, &case.given);
        let got = apply(&mut s, case.when.clone());
        if got != case.then {
            failed.push(format!(
                "{}\n  when {:?}\n  expected {:?}\n  got      {:?}",
                case.name, case.when, case.then, got
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

// --- sequences -------------------------------------------------------------------------------

#[test]
fn opening_frames_announce_limits_and_the_session_window() {
    let mut out = Vec::new();
    let cfg = Config {
        initial_window_size: 100_000,
        ..Config::default()
    }
    .normalized();
    State::new(&cfg, Role::Server, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Send(Frame::Settings {
                clear: false,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: setting_id::MAX_CONCURRENT_STREAMS,
                        value: 100,
                    },
                    Setting {
                        flags: 0,
                        id: setting_id::INITIAL_WINDOW_SIZE,
                        value: 100_000,
                    },
                ],
            }),
            Action::Send(window_update(0, (1 << 20) - DEFAULT_WINDOW)),
        ]
    );
}

#[test]
fn local_stream_ids_are_odd_for_clients_even_for_servers_and_increase() {
    for (role, want) in [(Role::Client, [1, 3, 5]), (Role::Server, [2, 4, 6])] {
        let mut s = machine(role, Config::default());
        let ids: Vec<_> = (0..3)
            .map(|_| s.open(Headers::new(), false, &mut Vec::new()).unwrap())
            .collect();
        assert_eq!(ids, want, "{role:?}");
    }
}

#[test]
fn stream_ids_run_out() {
    let mut s = machine(Role::Client, Config::default());
    s.next_local_id = MAX_WINDOW; // the last odd id
    let mut out = Vec::new();
    assert_eq!(s.open(Headers::new(), false, &mut out), Ok(MAX_WINDOW));
    assert_eq!(
        s.open(Headers::new(), false, &mut out),
        Err(SessionError::StreamIdsExhausted)
    );
}

#[test]
fn opening_is_refused_after_goaway_either_way() {
    let mut s = run(Role::Client, strict(), &[hello(), Ev::Open { fin: false }]);
    apply(&mut s, Ev::Recv(goaway(1, GoAwayStatus::Ok)));
    assert_eq!(
        s.open(Headers::new(), false, &mut Vec::new()),
        Err(SessionError::GoAwayReceived {
            status: GoAwayStatus::Ok,
            last_good_stream_id: 1
        })
    );

    let mut s = run(
        Role::Client,
        strict(),
        &[hello(), Ev::Open { fin: false }, Ev::GoAway],
    );
    assert_eq!(
        s.open(Headers::new(), false, &mut Vec::new()),
        Err(SessionError::ShutDown)
    );
}

#[test]
fn goaway_from_the_peer_fails_refused_streams_and_ends_when_the_rest_are_done() {
    let mut s = run(
        Role::Client,
        strict(),
        &[
            hello(),
            Ev::Open { fin: false },
            Ev::Open { fin: false },
            Ev::Recv(reply(1, false)),
            Ev::Recv(goaway(1, GoAwayStatus::Ok)),
        ],
    );
    assert_eq!(
        s.stream(3).unwrap().reset,
        Some(StreamError::ResetByPeer {
            stream_id: 3,
            status: RstStatus::RefusedStream
        })
    );
    assert_eq!(
        apply(&mut s, Ev::Dropped(3)).last(),
        Some(&Action::Forget(3))
    );
    // Stream 1 goes on: data both ways, then FINs.
    apply(&mut s, Ev::Write(1, 10));
    apply(&mut s, Ev::Fin(1));
    assert_eq!(
        apply(&mut s, Ev::Recv(data(1, 4, true))),
        vec![deliver(1, 4), Action::PeerFinished(1)]
    );
    assert!(s.closed().is_none());
    assert_eq!(
        apply(&mut s, Ev::Dropped(1)),
        vec![
            Action::Discard(1),
            Action::ResumeReading,
            Action::Forget(1),
            Action::Closed {
                discard_queued: false
            },
        ]
    );
    assert_eq!(
        s.closed(),
        Some(&SessionError::GoAwayReceived {
            status: GoAwayStatus::Ok,
            last_good_stream_id: 1
        })
    );
}

#[test]
fn strict_windows_run_out_and_reopen() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    let window = DEFAULT_WINDOW as usize;
    assert_eq!(s.write_capacity(1, usize::MAX, 16_384), Ok(16_384));
    apply(&mut s, Ev::Write(1, window - 100));
    assert_eq!(s.write_capacity(1, 1000, 16_384), Ok(100));
    apply(&mut s, Ev::Write(1, 100));
    assert_eq!(
        s.write_capacity(1, 1000, 16_384),
        Ok(0),
        "stream window spent"
    );
    // The stream window reopens; the session window (also 64 KiB) is spent too.
    apply(&mut s, Ev::Recv(window_update(1, 5000)));
    assert_eq!(
        s.write_capacity(1, 1000, 16_384),
        Ok(0),
        "session window spent"
    );
    assert_eq!(
        apply(&mut s, Ev::Recv(window_update(0, 3000))),
        vec![Action::WindowsChanged]
    );
    assert_eq!(s.write_capacity(1, 10_000, 16_384), Ok(3000));
    apply(&mut s, Ev::Write(1, 3000));
    // A second stream has its own window but shares the session's.
    apply(&mut s, Ev::Recv(syn(3, false)));
    apply(&mut s, Ev::Accept(3));
    assert_eq!(s.write_capacity(3, 1000, 16_384), Ok(0));
    apply(&mut s, Ev::Recv(window_update(0, 70_000)));
    assert_eq!(s.write_capacity(3, 100_000, 100_000), Ok(window));
    assert_eq!(s.write_capacity(1, 100_000, 100_000), Ok(2000));
}

#[test]
fn settings_initial_window_shifts_open_streams_windows() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    apply(&mut s, Ev::Recv(window_update(0, 1 << 20)));
    apply(&mut s, Ev::Recv(initial_window(10_000)));
    assert_eq!(s.write_capacity(1, 100_000, 100_000), Ok(10_000));
    apply(&mut s, Ev::Write(1, 10_000));
    apply(&mut s, Ev::Recv(initial_window(15_000)));
    assert_eq!(s.write_capacity(1, 100_000, 100_000), Ok(5_000));
    // A later stream starts with the new window.
    apply(&mut s, Ev::Recv(syn(3, false)));
    apply(&mut s, Ev::Accept(3));
    assert_eq!(s.write_capacity(3, 100_000, 100_000), Ok(15_000));
}

#[test]
fn adaptive_windows_follow_the_peer() {
    // Before the peer's first frame, and with a SPDY/3.1 peer, windows apply.
    let mut s = run(Role::Client, adaptive(), &[Ev::Open { fin: false }]);
    assert_eq!(
        s.write_capacity(1, 100_000, 100_000),
        Ok(DEFAULT_WINDOW as usize)
    );
    // spdystream opens with SYN_STREAM: its windows no longer limit our writes...
    apply(&mut s, Ev::Recv(syn(2, false)));
    apply(&mut s, Ev::Write(1, DEFAULT_WINDOW as usize));
    assert_eq!(s.write_capacity(1, 100_000, 100_000), Ok(100_000));
    // ...until it shows that it does flow control after all.
    assert_eq!(
        apply(&mut s, Ev::Recv(window_update(1, 10))),
        vec![Action::WindowsChanged]
    );
    assert_eq!(s.write_capacity(1, 100_000, 100_000), Ok(0));
}

#[test]
fn reading_grants_window_back_at_half_a_window() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    let half = DEFAULT_WINDOW as usize / 2;
    apply(&mut s, Ev::Recv(data(1, DEFAULT_WINDOW as usize, false)));
    assert_eq!(s.stream(1).unwrap().recv_buffered, DEFAULT_WINDOW as usize);
    assert_eq!(
        apply(&mut s, Ev::Consumed(1, half - 1)),
        vec![Action::ResumeReading]
    );
    assert_eq!(
        apply(&mut s, Ev::Consumed(1, 1)),
        vec![
            Action::ResumeReading,
            Action::Send(window_update(1, half as u32))
        ]
    );
    assert_eq!(s.stream(1).unwrap().recv_buffered, half);
    // The window is open again: more data is no flow-control error.
    assert_eq!(
        apply(&mut s, Ev::Recv(data(1, half, false))),
        vec![deliver(1, half)]
    );
}

#[test]
fn the_session_window_is_granted_back_at_half_its_size() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    // Session window 1 MiB: granted back once 512 KiB are consumed, across streams.
    let mut granted = Vec::new();
    for _ in 0..16 {
        apply(&mut s, Ev::Recv(data(1, 32_768, false)));
        granted.extend(
            apply(&mut s, Ev::Consumed(1, 32_768))
                .into_iter()
                .filter(|a| matches!(a, Action::Send(Frame::WindowUpdate { stream_id: 0, .. }))),
        );
    }
    assert_eq!(granted, vec![Action::Send(window_update(0, 512 << 10))]);
}

#[test]
fn half_close_ours_first_then_the_peers() {
    let mut s = run(Role::Client, strict(), &[hello(), Ev::Open { fin: false }]);
    apply(&mut s, Ev::Write(1, 3));
    apply(&mut s, Ev::Fin(1));
    assert_eq!(
        s.write_capacity(1, 10, 10),
        Err(StreamError::WriteAfterFin { stream_id: 1 })
    );
    // The peer's side is still open.
    assert_eq!(
        apply(&mut s, Ev::Recv(reply(1, false))),
        vec![Action::Replied(1)]
    );
    assert_eq!(
        s.stream(1).unwrap().reply,
        Reply::Received(Headers::new().with("x", "y"))
    );
    assert_eq!(
        apply(&mut s, Ev::Recv(data(1, 2, true))),
        vec![deliver(1, 2), Action::PeerFinished(1)]
    );
    // Finished both ways, but held: still tracked until the handle goes.
    assert!(s.stream(1).is_some());
    assert_eq!(
        apply(&mut s, Ev::Dropped(1)),
        vec![Action::Discard(1), Action::ResumeReading, Action::Forget(1)]
    );
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn half_close_the_peers_first_then_ours() {
    let mut s = run(
        Role::Server,
        strict(),
        &[hello(), Ev::Recv(syn(1, false)), Ev::Accept(1)],
    );
    apply(&mut s, Ev::Recv(data(1, 4, true)));
    assert!(s.stream(1).unwrap().recv_fin);
    // We can still write.
    apply(&mut s, Ev::Write(1, 100));
    assert_eq!(
        apply(&mut s, Ev::Fin(1)),
        vec![Action::Send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        })]
    );
    // The unread data stays, no WINDOW_UPDATE for a finished side.
    assert_eq!(
        apply(&mut s, Ev::Consumed(1, 4)),
        vec![Action::ResumeReading]
    );
    assert_eq!(
        apply(&mut s, Ev::Dropped(1)),
        vec![Action::Discard(1), Action::ResumeReading, Action::Forget(1)]
    );
}

#[test]
fn a_peer_reset_after_its_fin_keeps_the_stream_readable_then_failing_writes() {
    let s = run(
        Role::Server,
        strict(),
        &[
            hello(),
            Ev::Recv(syn(1, false)),
            Ev::Accept(1),
            Ev::Recv(data(1, 4, true)),
            Ev::Recv(rst(1, RstStatus::Cancel)),
        ],
    );
    let st = s.stream(1).unwrap();
    assert_eq!(st.recv_buffered, 4);
    let reset = StreamError::ResetByPeer {
        stream_id: 1,
        status: RstStatus::Cancel,
    };
    assert_eq!(st.reset, Some(reset.clone()));
    assert_eq!(s.write_capacity(1, 10, 10), Err(reset));
}

#[test]
fn a_reset_before_accept_withdraws_the_incoming_stream() {
    let mut s = run(Role::Server, strict(), &[hello(), Ev::Recv(syn(1, false))]);
    apply(&mut s, Ev::Recv(rst(1, RstStatus::Cancel)));
    assert!(s.take_incoming().is_none());
}

#[test]
fn a_unidirectional_stream_is_accepted_without_reply() {
    let mut s = run(Role::Server, strict(), &[hello()]);
    let Frame::SynStream(mut open) = syn(1, false) else {
        unreachable!()
    };
    open.unidirectional = true;
    apply(&mut s, Ev::Recv(Frame::SynStream(open)));
    let syn = s.take_incoming().unwrap();
    let mut out = Vec::new();
    s.accept(1, Headers::new(), syn.unidirectional, &mut out);
    assert_eq!(out, vec![]);
    assert_eq!(
        s.write_capacity(1, 10, 10),
        Err(StreamError::WriteAfterFin { stream_id: 1 })
    );
}

#[test]
fn a_peer_without_flow_control_pauses_the_reader_at_a_window_of_unread_data() {
    let mut s = run(
        Role::Server,
        adaptive(),
        &[Ev::Recv(syn(1, false)), Ev::Accept(1)],
    );
    apply(
        &mut s,
        Ev::Recv(data(1, DEFAULT_WINDOW as usize - 1, false)),
    );
    assert!(!s.reader_should_wait_for(1));
    apply(&mut s, Ev::Recv(data(1, 1, false)));
    assert!(s.reader_should_wait_for(1));
    apply(&mut s, Ev::Consumed(1, 1));
    assert!(!s.reader_should_wait_for(1));
    // A flow-controlled peer never pauses the reader.
    let mut s = run(Role::Server, adaptive(), &server_with_stream_1());
    apply(&mut s, Ev::Recv(data(1, DEFAULT_WINDOW as usize, false)));
    assert!(!s.reader_should_wait_for(1));
}

#[test]
fn pings_use_our_parity() {
    let mut s = machine(Role::Client, Config::default());
    let ids: Vec<_> = (0..3).map(|_| s.ping(&mut Vec::new()).unwrap()).collect();
    assert_eq!(ids, [1, 3, 5]);
    // The peer's PING with our parity is not ours to echo.
    assert_eq!(
        apply(&mut s, Ev::Recv(Frame::Ping { id: 3 })),
        vec![Action::WindowsChanged, Action::PingAnswered(3)]
    );
}

#[test]
fn dropping_every_handle_sends_goaway_and_ends_the_session() {
    let mut s = machine(Role::Server, Config::default());
    let mut out = Vec::new();
    s.incoming_dropped(&mut out);
    assert_eq!(out, vec![]);
    s.session_handle_dropped(&mut out);
    assert_eq!(
        out,
        vec![
            Action::Send(goaway(0, GoAwayStatus::Ok)),
            Action::IncomingChanged,
            Action::Closed {
                discard_queued: false
            },
        ]
    );
    assert_eq!(s.closed(), Some(&SessionError::ShutDown));
}

#[test]
fn a_transport_failure_discards_queued_frames_and_later_events_do_nothing() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    let mut out = Vec::new();
    s.close(SessionError::Io("broken pipe".into()), &mut out);
    assert_eq!(
        out,
        vec![Action::Closed {
            discard_queued: true
        }]
    );
    assert_eq!(apply(&mut s, Ev::Recv(data(1, 3, false))), vec![]);
    assert_eq!(
        apply(&mut s, Ev::Reset(1, RstStatus::Cancel)),
        vec![Action::StreamReset(1), Action::CancelQueued(1),]
    );
    assert!(matches!(
        s.write_capacity(1, 10, 10),
        Err(StreamError::ResetLocally { .. })
    ));
    assert_eq!(
        s.ping(&mut out),
        Err(SessionError::Io("broken pipe".into()))
    );
}

#[test]
fn protocol_errors_close_with_the_reason() {
    let mut s = run(Role::Server, strict(), &server_with_stream_1());
    apply(&mut s, Ev::Recv(syn(2, false)));
    assert!(
        matches!(s.closed(), Some(SessionError::Protocol(m)) if m.contains("stream id 2")),
        "{:?}",
        s.closed()
    );
}
