"""Task generators by family (N-body, toy symmetries, images, molecules); ``load_task`` and
``TASKS`` live in :mod:`eqhelpers.data`, which also re-exports every public name here."""
