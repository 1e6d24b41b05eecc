"""``python -m app.cli.client ...``: the client commands without the ``wanserve`` dispatcher."""

from app.cli.client.parser import main

raise SystemExit(main())
