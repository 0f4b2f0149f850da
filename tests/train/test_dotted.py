"""import_object: both dotted forms, and a clear error for anything that is not one."""

import pytest

from seqmix.train.dotted import import_object


def test_both_forms_name_the_same_object():
    from seqmix.train.data.mqar import MQARDataModule

    assert import_object("seqmix.train.data.mqar.MQARDataModule") is MQARDataModule
    assert import_object("seqmix.train.data.mqar:MQARDataModule") is MQARDataModule


@pytest.mark.parametrize(("path", "error"), [("MQARDataModule", ImportError), ("seqmix.nope.X", ImportError),
                                             ("seqmix.train.data.mqar.Nope", AttributeError), ("a.b:", ImportError)])
def test_bad_paths_raise(path, error):
    with pytest.raises(error):
        import_object(path)
