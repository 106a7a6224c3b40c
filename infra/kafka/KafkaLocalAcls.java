// The ACLs of kafka-local's secured mode, for when no Python with confluent-kafka is at hand: kafka-local runs
//   java -cp 'LIB/*' KafkaLocalAcls.java ADMIN_PROPERTIES USER SECONDS PREFIX...
// (Java's single-file source launcher: no build step, only kafka-clients from the broker's jars). It creates,
// as the admin of ADMIN_PROPERTIES, the same ACLs as kafka-local's Python does, retrying for up to SECONDS
// while the broker is not ready yet (without that Python, kafka-local's readiness check is a TCP connect).
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaLocalAcls {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: KafkaLocalAcls ADMIN_PROPERTIES USER SECONDS PREFIX...");
            System.exit(2);
        }
        Properties props = new Properties();
        try (InputStream in = Files.newInputStream(Path.of(args[0]))) {
            props.load(in);
        }
        String principal = "User:" + args[1];
        long deadline = System.nanoTime() + Long.parseLong(args[2]) * 1_000_000_000L;
        List<AclBinding> bindings = new ArrayList<>();
        add(bindings, principal, ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL,
                AclOperation.IDEMPOTENT_WRITE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS);
        for (int i = 3; i < args.length; i++) {
            add(bindings, principal, ResourceType.TOPIC, args[i], PatternType.PREFIXED, AclOperation.READ,
                    AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                    AclOperation.ALTER_CONFIGS, AclOperation.DELETE);
            add(bindings, principal, ResourceType.GROUP, args[i], PatternType.PREFIXED, AclOperation.READ,
                    AclOperation.DESCRIBE, AclOperation.DELETE);
            add(bindings, principal, ResourceType.TRANSACTIONAL_ID, args[i], PatternType.PREFIXED,
                    AclOperation.WRITE, AclOperation.DESCRIBE);
        }
        props.putIfAbsent("default.api.timeout.ms", "15000");
        props.putIfAbsent("request.timeout.ms", "5000");
        while (true) {
            try (Admin admin = Admin.create(props)) {
                admin.createAcls(bindings).all().get();
                System.out.println("created " + bindings.size() + " ACLs for " + principal);
                return;
            } catch (Exception e) {
                if (System.nanoTime() > deadline) {
                    System.err.println("could not create the ACLs: " + e);
                    System.exit(1);
                }
                Thread.sleep(1000);
            }
        }
    }

    private static void add(List<AclBinding> bindings, String principal, ResourceType type, String name,
            PatternType pattern, AclOperation... operations) {
        for (AclOperation operation : operations) {
            bindings.add(new AclBinding(new ResourcePattern(type, name, pattern),
                    new AccessControlEntry(principal, "*", operation, AclPermissionType.ALLOW)));
        }
    }
}
