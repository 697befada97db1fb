//! What the engine refuses reaches operators with the HTTP status and the exit code it always had.

use bindwave_controller::cli::exit_code;
use bindwave_controller::engine::EngineError;
use bindwave_controller::model::RolloutId;
use bindwave_controller::ControllerError;

#[test]
fn engine_errors_keep_their_status_exit_code_and_message() {
    let invalid = EngineError::InvalidAction { rollout: RolloutId::from(1), action: "start", state: "finished" };
    let cases = [
        (EngineError::UnknownImage("abcdef".into()), 404, 4),
        (EngineError::UnknownRollout("r9".into()), 404, 4),
        (EngineError::UnknownDevice("d".into()), 404, 4),
        (EngineError::AmbiguousImage("abcdef".into()), 400, 1),
        (EngineError::EmptyRollout, 400, 1),
        (EngineError::BadRequest("x".into()), 400, 1),
        (invalid, 409, 5),
    ];
    for (e, status, exit) in cases {
        let message = e.to_string();
        let e = ControllerError::from(e);
        assert_eq!((e.http_status(), exit_code(&e)), (status, exit), "{e:?}");
        assert_eq!(e.to_string(), message, "the message is the engine's own");
        assert_eq!(bindwave_controller::error_chain(&e), message, "and nothing is said twice");
    }
    assert_eq!(
        ControllerError::from(EngineError::InvalidAction {
            rollout: RolloutId::from(3),
            action: "resume",
            state: "finished"
        })
        .to_string(),
        "cannot resume rollout r3: it is finished"
    );
    let own = ControllerError::BadRequest("x".into());
    assert_eq!((own.http_status(), exit_code(&own)), (400, 1));
    assert_eq!(own.to_string(), "invalid request: x");
}
