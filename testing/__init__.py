"""crmbridge.testing: what adapter tests need, shipped so that a third-party adapter can use it too.

* :mod:`crmbridge.testing.contract`: the adapter contract suite (``AdapterContract``, ``ContractHarness``): one set
  of tests every adapter passes against its simulator;
* :mod:`crmbridge.testing.memory`: the ``memory`` test adapter and its simulator (a small JSON record store);
* :mod:`crmbridge.testing.plugin`: the pytest plugin (installed as the ``crmbridge`` ``pytest11`` entry point):
  fixtures to register an adapter for one test, and a helper that declares adapters as entry points for a
  subprocess.

Nothing in the product imports this package; it imports pytest.
"""
