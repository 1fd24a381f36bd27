#include "hw_steering.hpp"

#include <netinet/in.h>

#include <cerrno>
#include <cstdio>

#include <rte_errno.h>
#include <rte_flow.h>
#include <rte_thash.h>

namespace ephemera::hw {

std::vector<PortPrefix> port_prefixes(uint16_t first, uint16_t last)
{
    std::vector<PortPrefix> out;
    for (uint32_t lo = first; lo <= last;) {
        // The largest aligned block that starts at lo and ends by last.
        uint32_t size = lo == 0 ? 0x10000u : (lo & -lo);
        while (lo + size - 1 > last) size >>= 1;
        out.push_back({uint16_t(lo), uint16_t(~(size - 1))});
        lo += size;
    }
    return out;
}

const SourceHash::Key& SourceHash::default_key()
{
    // The Toeplitz key of Microsoft's RSS specification, the one most NICs and
    // DPDK's examples use.
    static const Key key = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
                            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
                            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};
    return key;
}

SourceHash::SourceHash(const Key& key)
{
    for (unsigned byte = 0; byte < 4; ++byte)
        for (unsigned v = 0; v < 256; ++v) {
            uint32_t tuple = uint32_t(v) << (24 - 8 * byte); // rte_softrss takes host-order words
            t_[byte][v] = rte_softrss(&tuple, 1, key.data());
        }
}

std::vector<OutsideRule> outside_rules(const PortLayout& layout)
{
    std::vector<OutsideRule> rules;
    for (uint8_t proto : {uint8_t(IPPROTO_TCP), uint8_t(IPPROTO_UDP), uint8_t(IPPROTO_SCTP), uint8_t(IPPROTO_ICMP)})
        for (unsigned w = 0; w < layout.workers(); ++w) {
            if (layout.size_of(w) == 0) continue;
            const uint16_t first = layout.first_of(w);
            for (const PortPrefix& p : port_prefixes(first, uint16_t(first + layout.size_of(w) - 1)))
                rules.push_back({proto, p, uint16_t(w)});
        }
    return rules;
}

namespace {

const char* proto_name(uint8_t proto)
{
    switch (proto) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_SCTP: return "sctp";
    default: return "icmp";
    }
}

// TCP and UDP carry nearly all return traffic: a port that cannot steer them
// gets no rules. SCTP and ICMP echo replies it cannot match are handed off.
bool optional(uint8_t proto) { return proto == IPPROTO_SCTP || proto == IPPROTO_ICMP; }

// spec/mask pair of an L4 item that has a destination port.
template <class Item>
void match_dst_port(rte_flow_item& l4, rte_flow_item_type type, Item (&item)[2], rte_be16_t value, rte_be16_t mask)
{
    item[0].hdr.dst_port = value;
    item[1].hdr.dst_port = mask;
    l4.type = type;
    l4.spec = &item[0];
    l4.mask = &item[1];
}

// A rule's pattern and action, built in place (the items point into it).
struct RuleSpec {
    rte_flow_attr attr{};
    rte_flow_item pattern[4]{};
    rte_flow_action action[2]{};
    rte_flow_action_queue queue{};
    rte_flow_item_ipv4 ipv4[2]{};
    rte_flow_item_tcp tcp[2]{};
    rte_flow_item_udp udp[2]{};
    rte_flow_item_sctp sctp[2]{};
    rte_flow_item_icmp icmp[2]{};

    explicit RuleSpec(const OutsideRule& r)
    {
        attr.ingress = 1;
        pattern[0].type = RTE_FLOW_ITEM_TYPE_ETH;
        // Not fragments: they are reassembled by whichever worker receives
        // them, so a first fragment must not be sent away from the rest.
        pattern[1].type = RTE_FLOW_ITEM_TYPE_IPV4;
        ipv4[1].hdr.fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK);
        pattern[1].spec = &ipv4[0];
        pattern[1].mask = &ipv4[1];
        rte_flow_item& l4 = pattern[2];
        const rte_be16_t value = rte_cpu_to_be_16(r.port.value), mask = rte_cpu_to_be_16(r.port.mask);
        switch (r.proto) {
        case IPPROTO_TCP: match_dst_port(l4, RTE_FLOW_ITEM_TYPE_TCP, tcp, value, mask); break;
        case IPPROTO_UDP: match_dst_port(l4, RTE_FLOW_ITEM_TYPE_UDP, udp, value, mask); break;
        case IPPROTO_SCTP: match_dst_port(l4, RTE_FLOW_ITEM_TYPE_SCTP, sctp, value, mask); break;
        default: // echo replies: the identifier is the external "port"
            l4.type = RTE_FLOW_ITEM_TYPE_ICMP;
            icmp[0].hdr.icmp_type = 0;
            icmp[1].hdr.icmp_type = 0xff;
            icmp[0].hdr.icmp_ident = value;
            icmp[1].hdr.icmp_ident = mask;
            l4.spec = &icmp[0];
            l4.mask = &icmp[1];
            break;
        }
        pattern[3].type = RTE_FLOW_ITEM_TYPE_END;
        queue.index = r.queue;
        action[0].type = RTE_FLOW_ACTION_TYPE_QUEUE;
        action[0].conf = &queue;
        action[1].type = RTE_FLOW_ACTION_TYPE_END;
    }
};

std::string describe(const OutsideRule& r, int rc, const rte_flow_error& err)
{
    char head[96];
    std::snprintf(head, sizeof head, "%s dst port 0x%04x/0x%04x -> queue %u", proto_name(r.proto), r.port.value,
                  r.port.mask, r.queue);
    const int code = rc < 0 ? -rc : rte_errno;
    if (code == ENOSYS) return "the port has no flow rules: its driver implements no rte_flow";
    std::string why = err.message ? err.message : "";
    if (why.empty()) why = rte_strerror(code);
    return std::string("the port refused the rule ") + head + ": " + why;
}

} // namespace

FlowRules::FlowRules(uint16_t port_id, const std::vector<OutsideRule>& rules) : port_(port_id)
{
    bool refused[256] = {};
    for (const OutsideRule& r : rules) {
        if (refused[r.proto]) continue;
        RuleSpec spec(r);
        rte_flow_error err{};
        const int rc = rte_flow_validate(port_, &spec.attr, spec.pattern, spec.action, &err);
        if (rc == 0) continue;
        if (!optional(r.proto)) {
            error_ = describe(r, rc, err);
            return;
        }
        refused[r.proto] = true;
        skipped_.push_back(proto_name(r.proto));
    }
    for (const OutsideRule& r : rules) {
        if (refused[r.proto]) continue;
        RuleSpec spec(r);
        rte_flow_error err{};
        rte_flow* f = rte_flow_create(port_, &spec.attr, spec.pattern, spec.action, &err);
        if (f == nullptr) {
            error_ = describe(r, -rte_errno, err);
            for (rte_flow* g : flows_) rte_flow_destroy(port_, g, &err);
            flows_.clear();
            return;
        }
        flows_.push_back(f);
    }
}

FlowRules::~FlowRules()
{
    rte_flow_error err{};
    for (rte_flow* f : flows_) rte_flow_destroy(port_, f, &err);
}

RssPlan plan_source_rss(const rte_eth_dev_info& info, uint16_t queues)
{
    RssPlan p;
    const uint64_t want = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_L3_SRC_ONLY;
    char buf[160];
    if (queues < 2) {
        p.why = "one queue";
    } else if ((info.flow_type_rss_offloads & want) != want) {
        std::snprintf(buf, sizeof buf, "the port cannot hash on the IPv4 source alone: RSS offloads 0x%llx",
                      static_cast<unsigned long long>(info.flow_type_rss_offloads));
        p.why = buf;
    } else if (info.reta_size < queues || (info.reta_size & (info.reta_size - 1)) != 0) {
        std::snprintf(buf, sizeof buf, "its redirection table has %u entries", unsigned(info.reta_size));
        p.why = buf;
    } else if (info.hash_key_size != 0 && info.hash_key_size < 8) {
        std::snprintf(buf, sizeof buf, "its RSS key has %u bytes", unsigned(info.hash_key_size));
        p.why = buf;
    }
    if (!p.why.empty()) return p;
    // Only the key's first 8 bytes touch a 4-byte input: any length the port
    // wants works, our key repeated.
    const unsigned len = info.hash_key_size ? info.hash_key_size : SourceHash::kKeyBytes;
    for (unsigned i = 0; i < len; ++i) p.key.push_back(SourceHash::default_key()[i % SourceHash::kKeyBytes]);
    p.hash_functions = want;
    p.on = true;
    return p;
}

bool program_reta(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues, const RssPlan& plan,
                  SourceRss& out, std::string& why)
{
    if (!plan.on) return false;
    const unsigned size = info.reta_size;
    std::vector<rte_eth_rss_reta_entry64> conf((size + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE);
    std::vector<uint16_t> reta(size);
    for (unsigned i = 0; i < size; ++i) {
        reta[i] = uint16_t(i % queues);
        conf[i / RTE_ETH_RETA_GROUP_SIZE].mask |= uint64_t(1) << (i % RTE_ETH_RETA_GROUP_SIZE);
        conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = reta[i];
    }
    if (int rc = rte_eth_dev_rss_reta_update(port_id, conf.data(), uint16_t(size)); rc != 0) {
        why = std::string("the port refused its redirection table: ") + rte_strerror(-rc);
        return false;
    }
    out.reta = std::move(reta);
    return true;
}

} // namespace ephemera::hw
