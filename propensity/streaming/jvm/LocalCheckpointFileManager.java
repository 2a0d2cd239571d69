package propensity.spark;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager;

/**
 * Spark's default checkpoint file manager, except that a checkpoint file on the local file system is created and
 * renamed with java.io/java.nio instead of Hadoop's local file system.
 *
 * Without Hadoop's native library (pip's pyspark has none) Hadoop's local file system starts a child process to set
 * a new file's permissions (`chmod`, for the file and its .crc) and another to resolve links before a rename
 * (`readlink`): about 70 ms of every micro-batch (offset log plus commit log) on 2 cores. Semantics are the parent's:
 * the file is written under a temporary name, forced to disk, then renamed into place, so a reader sees it whole or
 * not at all; a rename that must not overwrite fails with Hadoop's FileAlreadyExistsException, which is how Spark
 * detects two queries sharing a checkpoint. Other file systems (HDFS, S3) take the parent's path unchanged.
 *
 * Used through spark.sql.streaming.checkpointFileManagerClass; compiled by propensity/spark.py against the installed
 * pyspark's jars.
 */
public class LocalCheckpointFileManager extends FileContextBasedCheckpointFileManager {

  public LocalCheckpointFileManager(Path path, Configuration hadoopConf) {
    super(path, hadoopConf);
  }

  private static boolean isLocal(Path path) {
    String scheme = path.toUri().getScheme();
    return scheme == null || scheme.equals("file");
  }

  private static java.nio.file.Path local(Path path) {
    return Paths.get(path.toUri().getPath());
  }

  @Override
  public FSDataOutputStream createTempFile(Path path) {
    if (!isLocal(path)) {
      return super.createTempFile(path);
    }
    try {
      FileOutputStream out = new FileOutputStream(local(path).toFile()) {
        private boolean closed;

        @Override
        public void close() throws IOException {
          if (!closed) { // Hadoop's stream wrappers close more than once
            closed = true;
            getChannel().force(true); // on disk before it is renamed into place
          }
          super.close();
        }
      };
      return new FSDataOutputStream(out, null);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot create checkpoint file " + path, e);
    }
  }

  @Override
  public void renameTempFile(Path srcPath, Path dstPath, boolean overwriteIfPossible) {
    if (!isLocal(srcPath) || !isLocal(dstPath)) {
      super.renameTempFile(srcPath, dstPath, overwriteIfPossible);
      return;
    }
    java.nio.file.Path target = local(dstPath);
    if (!overwriteIfPossible && Files.exists(target)) {
      throw LocalCheckpointFileManager.<RuntimeException>unchecked(
          new FileAlreadyExistsException("checkpoint file " + dstPath + " already exists"));
    }
    try {
      Files.move(local(srcPath), target, StandardCopyOption.ATOMIC_MOVE); // rename(2)
    } catch (IOException e) {
      throw new UncheckedIOException("cannot rename " + srcPath + " to " + dstPath, e);
    }
  }

  // Spark declares no checked exceptions (Scala); it catches Hadoop's FileAlreadyExistsException by type.
  @SuppressWarnings("unchecked")
  private static <E extends Throwable> E unchecked(Throwable e) throws E {
    throw (E) e;
  }
}
