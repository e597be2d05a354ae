"""Development tools: the fixtures behind `ce-email dev ...` and `ce-email demo`.

Both refuse to run when CE_ENV=production. Nothing in the product imports this package;
only the CLI does.
"""
