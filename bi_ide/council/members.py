"""The council's composition (seed §II.C), as data: who sits where, what each one looks at.

A President (the user: veto and override), 16 high-council sages, 4 shadow members (risks), 4 light
members (opportunities), 4 scouts (they bring findings), 4 meta members (they watch the council's
own calibration) and 11 domain experts. Each member has a focus (the words its relevance to a
question is measured against, English and Arabic), the evidence topics it weighs, and a stance:
``balanced`` weighs every finding, ``risk`` only the ones against, ``opportunity`` only the ones for.
"""

from __future__ import annotations

from dataclasses import dataclass

from bi_ide.errors import ValidationError

GROUPS = ("president", "high", "shadow", "light", "scout", "meta", "domain")
VOTING_GROUPS = ("high", "shadow", "light", "scout", "domain")  # meta members publish calibration instead
STANCES = ("balanced", "risk", "opportunity")

# Evidence topics (bi_ide.council.evidence): what a finding is about.
TOPICS = ("memory", "thermal", "availability", "training", "quality", "deploy", "sales", "stock", "margin",
          "history")

# (expertise, Arabic name, focus words, topics)
HIGH_COUNCIL = [
    ("architecture", "حكيم العمارة", "architecture design system structure modules معمارية تصميم نظام",
     ("deploy", "quality", "history")),
    ("security", "حكيم الأمن", "security risk access attack vulnerability أمن حماية اختراق",
     ("deploy", "availability", "history")),
    ("ai", "حكيم الذكاء", "ai model training language model transformer ذكاء نموذج تدريب",
     ("training", "quality", "memory", "history")),
    ("data", "حكيم البيانات", "data corpus dataset sales numbers بيانات مبيعات أرقام",
     ("training", "sales", "stock", "history")),
    ("performance", "حكيم الأداء", "performance speed memory gpu throughput أداء سرعة ذاكرة",
     ("memory", "thermal", "availability")),
    ("ux", "حكيم التجربة", "user experience interface dashboard تجربة المستخدم واجهة", ("quality", "history")),
    ("business", "حكيم الأعمال", "business revenue profit margin customers أعمال أرباح عملاء هامش",
     ("sales", "margin", "stock", "history")),
    ("innovation", "حكيم الابتكار", "innovation new idea research ابتكار فكرة بحث", ("training", "quality")),
    ("quality", "حكيم الجودة", "quality validation tests bpb loss evaluation جودة تقييم اختبار",
     ("quality", "training", "deploy")),
    ("scalability", "حكيم التوسع", "scalability larger model bigger capacity توسع سعة حجم",
     ("memory", "availability", "stock")),
    ("arabic_nlp", "حكيم العربية", "arabic nlp text quran language عربي لغة نص قرآن", ("training", "quality")),
    ("devops", "حكيم العمليات", "devops deploy worker machine fleet operations نشر جهاز عمليات",
     ("availability", "thermal", "deploy", "memory")),
    ("mobile", "حكيم الجوال", "mobile laptop small device battery جوال لابتوب جهاز صغير",
     ("memory", "thermal", "availability")),
    ("web", "حكيم الويب", "web api dashboard server browser ويب خادم واجهة", ("deploy", "availability")),
    ("testing", "حكيم الاختبار", "testing evaluation regression checks اختبار تقييم", ("quality", "deploy")),
    ("strategy", "حكيم الاستراتيجية", "strategy priorities plan long term استراتيجية أولويات خطة",
     ("history", "sales", "training")),
]
SHADOW = [
    ("security_risks", "ظل الأمن", "security risks danger failure أخطار أمنية فشل", ("availability", "deploy")),
    ("scalability_issues", "ظل التوسع", "scalability issues out of memory too large مشاكل التوسع نفاد الذاكرة",
     ("memory", "stock")),
    ("performance_bottlenecks", "ظل الأداء", "performance bottlenecks slow hot throttling اختناق بطء حرارة",
     ("memory", "thermal", "availability")),
    ("edge_cases", "ظل الحالات", "edge cases failures regressions wrong حالات حدية أخطاء",
     ("quality", "training", "history", "margin", "sales")),
]
LIGHT = [
    ("innovation_opportunities", "نور الابتكار", "innovation opportunity new فرصة ابتكار جديد",
     ("training", "quality")),
    ("efficiency_gains", "نور الكفاءة", "efficiency faster cheaper savings كفاءة توفير أسرع",
     ("memory", "availability", "margin")),
    ("user_experience_improvements", "نور التجربة", "user experience improvement تحسين تجربة المستخدم",
     ("quality", "deploy")),
    ("growth_potential", "نور النمو", "growth potential sales demand نمو طلب مبيعات", ("sales", "stock", "training")),
]
SCOUTS = [
    ("tech", "كشاف التقنية", "tech tools frameworks models hardware تقنيات أدوات عتاد", ("memory", "training")),
    ("market", "كشاف السوق", "market demand users trend سوق طلب اتجاه", ("sales", "stock")),
    ("competitor", "كشاف المنافسين", "competitors others benchmark منافسون مقارنة", ("history", "quality")),
    ("opportunity", "كشاف الفرص", "opportunity unused idle capacity فرص سعة غير مستغلة",
     ("availability", "sales", "stock")),
]
META = [
    ("performance", "فوقي الأداء", "council performance decisions accuracy أداء المجلس دقة", ("history",)),
    ("quality", "فوقي الجودة", "decision quality calibration جودة القرارات معايرة", ("history",)),
    ("learning", "فوقي التعلم", "learning progress training guidance تقدم التعلم توجيه", ("training", "history")),
    ("evolution", "فوقي التطور", "evolution structure changes تطور تغييرات هيكلية", ("history",)),
]
DOMAIN_EXPERTS = [
    ("web_development", "خبير الويب", "web development api server تطوير الويب", ("deploy", "availability")),
    ("mobile_development", "خبير الجوال", "mobile development laptop device تطوير الجوال جهاز",
     ("memory", "thermal")),
    ("database", "خبير قواعد البيانات", "database storage duckdb tables قاعدة بيانات تخزين", ("history", "stock")),
    ("security", "خبير الأمن", "security tokens access أمن صلاحيات", ("deploy", "availability")),
    ("devops", "خبير العمليات", "devops gpu worker fleet machine عمليات جهاز أسطول",
     ("memory", "thermal", "availability")),
    ("machine_learning", "خبير تعلم الآلة", "machine learning training model preset bpb تعلم الآلة تدريب نموذج",
     ("memory", "training", "quality")),
    ("nlp", "خبير اللغة", "nlp language model text tokens لغة نص", ("training", "quality")),
    ("arabic_processing", "خبير العربية", "arabic processing quran text عربي معالجة", ("training", "quality")),
    ("erp", "خبير تخطيط الموارد", "erp product stock restock sales inventory margin مخزون منتج مبيعات هامش",
     ("sales", "stock", "margin")),
    ("ui_ux", "خبير الواجهات", "ui ux dashboard design واجهة تصميم", ("quality",)),
    ("networking", "خبير الشبكات", "networking network hub workers connection شبكة اتصال", ("availability",)),
]
STANCE_OF_GROUP = {"shadow": "risk", "light": "opportunity"}


@dataclass(frozen=True)
class Member:
    """One council member: who it is and what it looks at."""

    id: str
    name: str
    group: str
    expertise: str
    focus: str
    topics: tuple[str, ...]

    @property
    def stance(self) -> str:
        return STANCE_OF_GROUP.get(self.group, "balanced")

    @property
    def votes(self) -> bool:
        return self.group in VOTING_GROUPS

    def persona(self) -> str:
        """The member's system prompt for model backends: role, focus, what to look for."""
        looks = {"risk": "Look only for risks and reasons to refuse; list them under risks.",
                 "opportunity": "Look only for opportunities and gains; list them under opportunities.",
                 "balanced": "Weigh the evidence for and against."}[self.stance]
        if self.group == "scout":
            looks = "Report what the workbench's evidence shows, then weigh it."
        return (f"You are {self.name} ({self.expertise.replace('_', ' ')}), a member of the {self.group} group of "
                f"the BI-IDE council. Your focus: {self.focus}. {looks} Answer only with one JSON object.")

    def record(self) -> dict:
        """The row the store keeps for this member."""
        return {"id": self.id, "name": self.name, "group": self.group, "expertise": self.expertise,
                "focus": self.focus}


def _group(group: str, prefix: str, rows) -> list[Member]:
    return [Member(f"{prefix}-{expertise}", name, group, expertise, focus, tuple(topics))
            for expertise, name, focus, topics in rows]


PRESIDENT = Member("president", "الرئيس", "president", "president", "the user: veto and override", ())
MEMBERS: tuple[Member, ...] = (
    PRESIDENT,
    *_group("high", "hc", HIGH_COUNCIL),
    *_group("shadow", "shadow", SHADOW),
    *_group("light", "light", LIGHT),
    *_group("scout", "scout", SCOUTS),
    *_group("meta", "meta", META),
    *_group("domain", "expert", DOMAIN_EXPERTS),
)
BY_ID = {m.id: m for m in MEMBERS}


def voting_members(ids=None) -> list[Member]:
    """The members who answer a question (all voting members, or those of ``ids`` in council order)."""
    members = [m for m in MEMBERS if m.votes]
    if ids is None:
        return members
    unknown = sorted(set(ids) - {m.id for m in members})
    if unknown:
        raise ValidationError(f"unknown or non-voting member id(s) {unknown[:5]}; `bi-ide council members` "
                              "lists them", field="members")
    return [m for m in members if m.id in set(ids)]
