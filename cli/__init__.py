"""The ``skyshard`` command, on top of everything else.

:mod:`cli.main` dispatches to one module per subcommand (``cli.sample``, ``cli.export``,
``cli.train``, ``cli.pretrain``, ``cli.tune``, ``cli.ensemble``, ``cli.evaluate``,
``cli.score``, ``cli.demo``). Each exposes ``add_arguments(parser)`` and
``run(args, extra) -> int`` and calls the stage packages' functions (``exporter``, ``trainer``,
``evaluation``, ``sample``); nothing below this package imports it.
"""
