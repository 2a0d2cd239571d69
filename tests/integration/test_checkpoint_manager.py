"""The local checkpoint file manager (resources/jvm) in the test session's JVM: whole files, no silent overwrite."""

import pytest
from py4j.protocol import Py4JJavaError

from propensity.spark import CHECKPOINT_MANAGER_CLASS

pytestmark = pytest.mark.spark


@pytest.fixture
def manager(spark, tmp_path):
    jvm = spark.sparkContext._jvm
    assert spark.conf.get("spark.sql.streaming.checkpointFileManagerClass") == CHECKPOINT_MANAGER_CLASS
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    directory = jvm.org.apache.hadoop.fs.Path(tmp_path.as_uri())
    return jvm, jvm.propensity.spark.LocalCheckpointFileManager(directory, hadoop_conf)


def _write(jvm, manager, path, text: str, overwrite: bool) -> None:
    stream = manager.createAtomic(jvm.org.apache.hadoop.fs.Path(path.as_uri()), overwrite)
    stream.write(bytearray(text.encode()))
    stream.close()


def test_a_checkpoint_file_appears_whole_and_only_when_closed(manager, tmp_path):
    jvm, fm = manager
    target = tmp_path / "offsets" / "0"
    (tmp_path / "offsets").mkdir()
    stream = fm.createAtomic(jvm.org.apache.hadoop.fs.Path(target.as_uri()), False)
    stream.write(bytearray(b"v1\n{}"))
    assert not target.exists()  # still under its temporary name
    stream.close()
    assert target.read_text() == "v1\n{}"
    assert [p.name for p in (tmp_path / "offsets").iterdir()] == ["0"]  # no temporary or .crc left behind


def test_an_existing_file_is_not_overwritten_unless_asked(manager, tmp_path):
    jvm, fm = manager
    target = tmp_path / "commits-1"
    _write(jvm, fm, target, "first", overwrite=False)
    with pytest.raises(Py4JJavaError) as error:
        _write(jvm, fm, target, "second", overwrite=False)
    # Spark tells two queries sharing a checkpoint apart by exactly this exception type.
    assert error.value.java_exception.getClass().getName() == "org.apache.hadoop.fs.FileAlreadyExistsException"
    assert target.read_text() == "first"
    _write(jvm, fm, target, "third", overwrite=True)
    assert target.read_text() == "third"
