"""The secret mask adapter for Airflow's ``[logging] secret_mask_adapter``.

.. code-block:: ini

    [logging]
    secret_mask_adapter = airflow_dts_provider.secrets.masking.encoded_forms

With it, every value Airflow registers with its secret masker (a connection password from its
database, a sensitive Variable, a value from any secrets backend) is also masked in the forms
``get_uri()``, ``json.dumps``, ``tojson``, ``repr`` and HTML escaping write it in. Values from
1Password get these forms from the provider whether or not this is set.
"""

from __future__ import annotations

from airflow_dts_provider._onepassword.masking import encoded_forms

__all__ = ["encoded_forms"]
