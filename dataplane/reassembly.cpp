// rte_ip_frag_table_del_expired_entries is still experimental in DPDK 22.11;
// without it an incomplete datagram's mbufs stay held until its slot is reused.
#define ALLOW_EXPERIMENTAL_API 1

#include "reassembly.hpp"

#include "checksum.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <rte_ip.h>

namespace ephemera {

namespace {
constexpr uint32_t kBucketEntries = 8; // associativity of the table's hash
}

Reassembly::Reassembly(uint32_t slots, uint64_t timeout_tsc, int socket)
{
    const uint32_t buckets = std::max<uint32_t>(1, rte_align32pow2(slots) / kBucketEntries * 2);
    table_ = rte_ip_frag_table_create(buckets, kBucketEntries, slots, timeout_tsc, socket);
    // rte_ip_frag_table_create() leaves rte_errno as it was: out of memory
    // is its only failure with these arguments.
    if (table_ == nullptr)
        throw std::runtime_error("dataplane.reassembly = " + std::to_string(slots) +
                                 ": not enough DPDK memory for the reassembly table");
}

Reassembly::~Reassembly()
{
    free_dropped();
    rte_ip_frag_table_destroy(table_); // frees the fragments still held
}

void Reassembly::free_dropped()
{
    if (death_row_.cnt == 0) return;
    dropped_ += death_row_.cnt;
    rte_ip_frag_free_death_row(&death_row_, 0);
}

// rte_ip_frag trusts the header it is given: a fragment is checked here, so
// that a damaged one neither occupies a slot nor, sharing a datagram's key,
// makes DPDK drop the datagram's good fragments as duplicates.
bool Reassembly::well_formed(const rte_ipv4_hdr* ip, uint32_t available)
{
    const uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    const uint32_t total = rte_be_to_cpu_16(ip->total_length);
    const uint16_t frag = rte_be_to_cpu_16(ip->fragment_offset);
    const uint32_t offset = uint32_t(frag & RTE_IPV4_HDR_OFFSET_MASK) * RTE_IPV4_HDR_OFFSET_UNITS;
    const uint32_t payload = total - ihl;
    return (ip->version_ihl >> 4) == 4 && ihl >= sizeof(rte_ipv4_hdr) && total > ihl && total <= available &&
           ((frag & RTE_IPV4_HDR_MF_FLAG) == 0 || payload % 8 == 0) && offset + total <= UINT16_MAX &&
           csum::verify_ipv4_header(ip, ihl);
}

rte_mbuf* Reassembly::add(rte_mbuf* m, uint16_t l3, uint64_t tsc)
{
    ++fragments_;
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, l3);
    // A fragment as received is one segment.
    if (m->nb_segs != 1 || m->data_len < l3 + sizeof(rte_ipv4_hdr) || !well_formed(ip, uint32_t(m->data_len) - l3)) {
        ++dropped_;
        rte_pktmbuf_free(m);
        return nullptr;
    }
    m->l2_len = l3;
    m->l3_len = (ip->version_ihl & 0x0f) * 4u;
    rte_mbuf* whole = rte_ipv4_frag_reassemble_packet(table_, &death_row_, m, tsc, ip);
    free_dropped();
    if (whole == nullptr) return nullptr;
    ++reassembled_;
    ip = rte_pktmbuf_mtod_offset(whole, rte_ipv4_hdr*, l3);
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    whole->ol_flags &= ~RTE_MBUF_F_RX_IP_CKSUM_MASK; // the NIC's verdict was on a fragment
    return whole;
}

void Reassembly::expire(uint64_t tsc)
{
    rte_ip_frag_table_del_expired_entries(table_, &death_row_, tsc);
    free_dropped();
}

} // namespace ephemera
