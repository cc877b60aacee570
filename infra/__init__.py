"""mailstack's Pulumi program: the AWS sender fleet or owned servers, one ``ComponentResource`` per module.

``Pulumi.yaml`` (``main: infra/``) runs ``infra/__main__.py``; tests and ``make compliance`` run the same
program under Pulumi's mocks through :mod:`infra.harness`.
"""
