"""`mesh-sim erp|crm|smtp`: run one simulator, configured from env (MESH_HTTP_HOST/PORT, ERP_SIM_*, ...)."""

from __future__ import annotations

import argparse
import sys

from mesh_common.settings import ServiceSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh-sim", description=__doc__)
    parser.add_argument("which", choices=["erp", "crm", "smtp"])
    parser.add_argument("--port", type=int, help="HTTP port (default $MESH_HTTP_PORT)")
    parser.add_argument("--smtp-port", type=int, help="SMTP port of the catcher (default $MESH_SMTP_PORT or 1025)")
    args = parser.parse_args(argv)

    from .common import serve
    from .recorder import Recorder

    settings = ServiceSettings()
    if args.which == "erp":
        from .erp import create_app as erp_app
        from .kafka_out import make_clock

        clock, _follower = make_clock(settings)
        serve(erp_app(clock=clock), settings, args.port)
    elif args.which == "crm":
        from .crm import create_app as crm_app

        serve(crm_app(), settings, args.port)
    else:
        from .common import gated_port
        from .smtp import SmtpCatcher, SmtpSimSettings
        from .smtp import create_app as smtp_app

        smtp = SmtpSimSettings()
        recorder = Recorder()
        app = smtp_app(recorder)
        smtp_port = gated_port(app, smtp.host, args.smtp_port or smtp.port)
        catcher = SmtpCatcher(recorder, "127.0.0.1" if smtp_port != (args.smtp_port or smtp.port) else smtp.host,
                              smtp_port, faults=app.state.faults).start()
        try:
            serve(app, settings, args.port, gate=False)
        finally:
            catcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
