# The one version of the ccmirror wheel installed fleet-wide, from salt://wheelhouse/.
# Bump it together with pyproject.toml; tests/salt checks that the two agree.
ccmirror:
  version: "0.1.0"
